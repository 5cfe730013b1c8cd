"""Probes of tests/unit/config/test_flag_effects.py (see flag_probes.py) that run a piece of the pipeline with its
backends replaced by recorders: the run, the optimizer, reference and KTO trainers, model building, PPO, GPTQ.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from tests.unit.config.flag_probes import (
    Case,
    _cpu_tiny,
    _drop_nan,
    _jsonable,
    _patched,
    _Stop,
    _word_tokenizer,
    probe,
)


@probe("the run")
def the_run(case: Case) -> Any:
    """app._run (the task function's body) in the case's folder, with the stages, the final-model link and the
    held-out sample replaced by recorders: the store it opens, the stages it would force, whether it executes
    (run.dry_run), the objective it returns (each stage reports eval_loss 2.0 and eval_accuracy 0.5) and whether
    it shows the sample (run.sample)."""
    import contextlib
    import io
    import os

    import llmpipe.app as app
    import llmpipe.infer.model_ref as model_ref
    import llmpipe.pipeline.outputs as outputs
    import llmpipe.stages.sample as sample
    from llmpipe.pipeline.runner import Runner, RunResult, forced

    if "the run" in case._cache:   # the base of every run.* case is the same Case: run it once
        return case._cache["the run"]
    seen: dict = {"executed": False, "sample": False}

    def execute(runner):
        seen.update(executed=True, store=os.path.relpath(runner.store.root, case.workdir),
                    forced=[n.id for n in runner.plan.nodes if forced(n, runner.force)])
        ids = runner.plan.ids()
        return RunResult(outputs={i: case.workdir for i in ids}, status={i: "ran" for i in ids},
                         metrics={i: {"eval_loss": 2.0, "eval_accuracy": 0.5} for i in ids},
                         seconds={i: 0.0 for i in ids})

    patches = [(Runner, "execute", execute), (model_ref, "final_model", lambda *_a, **_k: None),
               (outputs, "link_final", lambda *_a, **_k: None),
               (sample, "show_sample", lambda *_a, **_k: seen.update(sample=True))]
    saved = [(o, n, getattr(o, n)) for o, n, _ in patches]
    cwd = os.getcwd()
    try:
        for o, n, v in patches:
            setattr(o, n, v)
        os.chdir(case.workdir)
        with contextlib.redirect_stdout(io.StringIO()):
            seen["objective"] = app._run(copy.deepcopy(case.cfg), [])
    finally:
        os.chdir(cwd)
        for o, n, v in saved:
            setattr(o, n, v)
    case._cache["the run"] = _jsonable(seen)
    return case._cache["the run"]


def _scalars(obj: Any) -> dict:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and (
        isinstance(v, (int, float, str, bool, type(None))) or (isinstance(v, (list, tuple)) and len(v) < 64 and all(
            isinstance(x, (int, float, str, bool)) for x in v)))}


def _groups(opt: Any) -> list:
    return [{k: (len(v) if k == "params" else v) for k, v in g.items()} for g in opt.param_groups]


@probe("optimizer")
def optimizer(case: Case) -> Any:
    """training/optimizers.build_optimizer for the tiny model (as the stage makes it trainable: LoRA through PEFT):
    the optimizer's class, its scalar settings and its parameter groups (sizes, learning rates, projection)."""
    if "optimizer" in case._cache:
        return case._cache["optimizer"]
    from llmpipe.training.args import training_arguments
    from llmpipe.training.optimizers import build_optimizer

    model = _cpu_tiny()
    if case.obj.train.finetuning_type == "lora":
        from peft import get_peft_model

        from llmpipe.models.adapters import lora_config

        model = get_peft_model(model, lora_config(case.obj, model))
    args = training_arguments(case.obj, Path("flag-effect-out"), has_eval=True)
    opt = build_optimizer(model, case.obj, args)
    if opt is None:
        out: Any = None
    else:
        inner = getattr(opt, "optimizer_dict", None)   # GaLore layer-wise: one optimizer per parameter
        out = {"class": type(opt).__name__, "settings": _scalars(opt), "groups": _groups(opt) if not inner else
               sorted(json.dumps(_groups(o), default=repr, sort_keys=True) for o in inner.values())}
        base = getattr(opt, "base_optimizer", None)
        if base is not None:
            out["base"] = {"class": type(base).__name__, "groups": _groups(base)}
    case._cache["optimizer"] = _jsonable(out)
    return case._cache["optimizer"]


@probe("reference model loading")
def reference(case: Case) -> Any:
    """training/reference.load_reference with the loaders replaced by recorders: which model it resolves and loads
    (with which quantization), and which adapters it puts on it."""
    import torch

    import llmpipe.models.adapters as adapters
    import llmpipe.models.loading as loading
    import llmpipe.training.reference as ref

    calls: list = []

    def load_causal_lm(source, cfg, *, training=False, **_k):
        calls.append(["load", str(source), cfg.quantization.bit, cfg.quantization.method, training,
                      list(cfg.model.adapter_name_or_path)])
        return torch.nn.Linear(1, 1)

    patches = [(loading, "resolve_source", lambda name, _root: (calls.append(["resolve", name]), name)[1]),
               (loading, "load_tokenizer", lambda *_a, **_k: None), (loading, "load_causal_lm", load_causal_lm),
               (ref, "check_tokenizer", lambda *_a, **_k: None),
               (adapters, "load_adapter", lambda m, name, *_a, **_k: (calls.append(["adapter", str(name)]), m)[1]),
               (adapters, "merge_adapters", lambda m, names, *_a, **_k: (calls.append(["merge", list(names)]), m)[1])]
    _patched(patches, lambda: ref.load_reference(case.obj, "policy-base", None, case.workdir, log=lambda _m: None))
    return calls


@probe("KTO trainer config")
def kto(case: Case) -> Any:
    """training/kto.train_kto up to its TRL KTOConfig, with the tokenizer, data, reference and model loading
    replaced: the config it builds."""
    from types import SimpleNamespace

    import llmpipe.data.published as published
    import llmpipe.training.causal as causal
    import llmpipe.training.pref_common as pref_common
    import llmpipe.training.reference as ref
    from llmpipe.training.kto import train_kto

    seen: dict = {}

    def trl_config(ctx, cls, has_eval, **extra):
        seen["config"] = _drop_nan(real(ctx, cls, has_eval, **extra).to_dict())
        raise _Stop

    real = pref_common.trl_config
    ctx = SimpleNamespace(obj=case.obj, load_dir=case.workdir, cache_root=case.workdir, work=Path("flag-effect-kto"),
                          out=case.workdir, job_dir=None, reference_dir=None, log=lambda _m: None)
    patches = [(causal, "load_saved_tokenizer", lambda *_a: None), (causal, "prepare_model", lambda *_a: None),
               (published, "open_published", lambda *_a: (None, None)), (published, "read_source", lambda *_a: "base"),
               (ref, "load_reference", lambda *_a, **_k: None), (pref_common, "trl_config", trl_config)]
    try:
        _patched(patches, lambda: train_kto(ctx))
    except _Stop:
        pass
    return _jsonable(seen)


@probe("model building")
def model_building(case: Case) -> Any:
    """The load stage's tokenizer (models/loading.load_tokenizer) and the model a train stage builds
    (models/trainable.build, as training/causal.prepare_model calls it), with every from_pretrained replaced by a
    recorder that returns the tiny architecture (random weights, seeded) or a word-level tokenizer, and PEFT's
    adapter loading recorded: the loaders' arguments, the adapters loaded, the log, the embedding rows."""
    if "model building" in case._cache:
        return case._cache["model building"]
    import peft
    import torch
    from transformers import LlamaConfig

    import llmpipe.models.loading as loading
    from llmpipe.models.tiny import SPECS
    from llmpipe.models.trainable import build

    calls: list = []

    def from_pretrained(loader, source, **kw):
        calls.append([getattr(loader, "__name__", str(loader)), str(source),
                      {k: v for k, v in kw.items() if k != "config"}])
        if loader.__name__ == "AutoConfig":
            return LlamaConfig(**{k: v for k, v in SPECS["builtin:tiny-random"].items() if k != "seed"})
        if loader.__name__ == "AutoTokenizer":
            return _word_tokenizer()
        torch.manual_seed(0)
        return loader.from_config(kw["config"], dtype=kw.get("dtype"),
                                  **({"attn_implementation": kw["attn_implementation"]}
                                     if "attn_implementation" in kw else {}))

    class Loaded:   # what PeftModel.from_pretrained gives back: merged, it is the model again
        def __init__(self, model):
            self.model = model

        def merge_and_unload(self):
            return self.model

    def peft_load(model, ref, **kw):
        calls.append(["PeftModel", str(ref), kw])
        return Loaded(model)

    log: list = []
    patches = [(loading, "_from_pretrained", from_pretrained),
               (peft.PeftModel, "from_pretrained", staticmethod(peft_load))]

    def run():
        from llmpipe.errors import UserError

        tok = loading.load_tokenizer("flag-effect-base", case.obj.model)
        try:
            model = build("flag-effect-base", case.obj, log=log.append)
        except UserError as e:   # e.g. added tokens that the embeddings cannot hold without model.resize_vocab
            return {"error": f"{type(e).__name__}: {e}"}
        emb = model.get_input_embeddings().weight
        return {"tokenizer": [len(tok), sorted(tok.get_added_vocab()), getattr(tok, "split_special_tokens", None)],
                "embedding": [list(emb.shape), round(float(emb.float().abs().sum()), 2)],
                "dtypes": sorted({str(p.dtype) for p in model.parameters()})}

    out = _patched(patches, run)
    case._cache["model building"] = _jsonable({"calls": calls, "log": log, **out})
    return case._cache["model building"]


@probe("PPO loop and reward")
def ppo(case: Case) -> Any:
    """training/ppo.PPOLoop built around the CPU tiny policy (its batch, steps, scheduler length and KL controller;
    the scheduler factory recorded), one PPOLoop.experience over made-up rollouts (the returns it computes from the
    scores), and training/ppo_rewards.build_reward with the reward-model loaders replaced by recorders (which model,
    adapters, quantization, or the reward adapter on the policy)."""
    if "ppo" in case._cache:
        return case._cache["ppo"]
    from types import SimpleNamespace

    import torch
    import transformers

    import llmpipe.training.ppo_rewards as rewards
    import llmpipe.training.ppo_rollout as rollout
    import llmpipe.training.reward_model as reward_model
    from llmpipe.training.ppo import PPOLoop

    seen: dict = {"reward": []}
    real_scheduler = transformers.get_scheduler

    def get_scheduler(name, optimizer, **kw):
        seen["scheduler"] = [str(name), kw]
        return real_scheduler(name, optimizer, **kw)

    policy = _cpu_tiny()
    patches = [(transformers, "get_scheduler", get_scheduler),
               (reward_model, "locate", lambda path: path),
               (reward_model, "load_reward_model", lambda source, **kw: seen["reward"].append(
                   ["model", os.path.relpath(str(source), case.workdir.parent), kw])),
               (rewards, "ModelReward", lambda rm: rm),
               (rewards, "AdapterReward", lambda _policy, where, _tok: seen["reward"].append(
                   ["adapter", os.path.relpath(str(where), case.workdir.parent)]))]

    # one experience step of two prompts with made-up rollouts (row i of ids is all i): scores 1 and 3
    g = torch.Generator().manual_seed(0)
    logp, values, ref = (torch.randn(2, 4, generator=g) for _ in range(3))
    roll = SimpleNamespace(conversations=[None, None], ids=torch.tensor([[0] * 6, [1] * 6]), mask=torch.ones(2, 6),
                           start=2, response_mask=torch.ones(2, 4))
    patches += [(rollout, "generate", lambda *_a, **_k: roll), (rollout, "generation_config", lambda *_a: None),
                (rollout, "forward", lambda _p, _v, ids, *_a: (logp[ids[:, 0]], values[ids[:, 0]]))]

    def run():
        from llmpipe.training.ppo_accel import make_accelerator

        acc = make_accelerator(case.obj, case.workdir / "tensorboard", None)
        loop = PPOLoop(SimpleNamespace(obj=case.obj), policy, None, None, None, [[1, 2, 3]] * 8, acc)
        seen["loop"] = {"batch": loop.batch, "steps": loop.steps, "kl": vars(loop.kl)}
        loop.prompt_batch, loop.reward = (lambda: [0, 1]), SimpleNamespace(score=lambda *_a: [1.0, 3.0])
        loop.ref_logprobs = lambda ids, *_a: ref[ids[:, 0]]
        returns = loop.experience()[4]
        seen["returns"] = [round(x, 4) for x in returns.flatten().tolist()]
        rewards.build_reward(case.obj, policy, None, case.workdir / "reward", log=lambda _m: None)

    _patched(patches, run)
    case._cache["ppo"] = _jsonable(seen)
    return case._cache["ppo"]


@probe("GPTQ calibration")
def gptq_calibration(case: Case) -> Any:
    """stages/quantize.run up to GPTQ, with the model folders, the tokenizer (word-level) and exporting/gptq.quantize
    replaced, on a machine said to have a GPU: the calibration windows (count, lengths, a checksum of their tokens)
    and the bits, device and dtype GPTQ is given."""
    if "gptq" in case._cache:
        return case._cache["gptq"]
    from types import SimpleNamespace

    import transformers

    import llmpipe.exporting.gptq as gptq
    import llmpipe.exporting.source as source
    from llmpipe.stages.quantize import run

    seen: dict = {}

    def quantize(_src, _out, windows, bits, *, device, dtype, log):
        seen.update(windows=len(windows), lengths=sorted({len(w) for w in windows}),
                    checksum=sum(sum(w) for w in windows), bits=bits, device=device, dtype=str(dtype))
        raise _Stop

    import torch

    tok = _word_tokenizer()
    patches = [(source, "model_folder", lambda *_a: case.workdir),
               (source, "tokenizer_folder", lambda *_a: case.workdir),
               (torch.cuda, "is_available", lambda: True),   # export.device=auto picks the GPU where there is one
               (transformers.AutoTokenizer, "from_pretrained", staticmethod(lambda *_a, **_k: tok)),
               (gptq, "quantize", quantize)]
    ctx = SimpleNamespace(obj=case.obj, inputs={}, input=lambda _k: case.workdir, out=case.workdir,
                          work=case.workdir, log=lambda _m: None)
    try:
        _patched(patches, lambda: run(ctx))
    except _Stop:
        pass
    case._cache["gptq"] = _jsonable(seen)
    return case._cache["gptq"]
