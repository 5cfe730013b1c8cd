"""Support of tests/unit/config/test_flag_effects.py, the probes (the values, contexts and known gaps it uses are in
flag_cases.py).

A probe is a function ``probe(case) -> JSON-able snapshot`` of one destination (TrainingArguments, the LoRA
config, the data options, ...), computed in-process without training, loading weights or generating. The
destination of each parameter is stated once, in ``llmpipe.tools.paramdoc.DESTINATIONS`` (docs/parameters.md
shows it); this module holds the probe of each destination. A value "arrives" when the snapshot of the
configuration with the value differs from the snapshot of the same configuration without it.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

# --- probes -------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    """One configuration: the composed DictConfig, the typed object, the plan with fingerprints."""
    cfg: Any
    obj: Any
    plan: Any
    workdir: Path

    _cache: dict = dataclasses.field(default_factory=dict)


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=repr, sort_keys=True))


def _drop_nan(d: dict) -> dict:
    return {k: v for k, v in d.items() if not (isinstance(v, float) and math.isnan(v))}


PROBES: dict[str, Callable[[Case], Any]] = {}


def probe(name: str):
    def deco(fn):
        PROBES[name] = fn
        return fn
    return deco


@probe("SFT loss")
def sft_loss(case: Case) -> Any:
    """training/sft_losses: the configured loss's value on a fixed batch of logits (with fixed reference logits)."""
    import torch

    from llmpipe.training.sft_losses import configured_loss

    loss = configured_loss(case.obj)
    if loss is None:
        return None
    g = torch.Generator().manual_seed(0)
    logits, ref = torch.randn(2, 5, 32, generator=g), torch.randn(2, 5, 32, generator=g)
    labels = torch.randint(0, 32, (2, 5), generator=g)
    labels[0, :2] = -100
    loss.ref_logits = ref
    return [loss.kind, round(float(loss({"logits": logits}, labels)), 6)]


@probe("TrainingArguments")
def training_args(case: Case) -> Any:
    from llmpipe.training.args import training_arguments

    ta = training_arguments(case.obj, Path("flag-effect-out"), has_eval=True)   # the same folder for every case
    return _jsonable(_drop_nan(ta.to_dict()))


@probe("data options")
def data_options(case: Case) -> Any:
    from llmpipe.data.options import DataOptions

    return _jsonable(DataOptions.from_cfg(case.obj).to_dict())


@probe("multiple-choice evaluation")
def multiple_choice(case: Case) -> Any:
    """The mc_eval stage's job (llmpipe.infer.multiple_choice.job_from_config): the task's source folder, the
    chat turns of each subject's first question (few-shot examples, wording), the batch size, the results copy."""
    from llmpipe.infer.multiple_choice import job_from_config

    job = job_from_config(case.obj)
    return _jsonable({"task": job.task, "source": job.source, "first": [c[0] for c in job.conversations()],
                      "batch_size": job.batch_size, "save_dir": job.save_dir})


@probe("generation config")
def generation(case: Case) -> Any:
    from llmpipe.infer.generation import from_config

    return _jsonable({"chat": dataclasses.asdict(from_config(case.obj)),
                      "predict": dataclasses.asdict(from_config(case.obj, for_eval=True))})


@probe("stage plan")
def stage_plan(case: Case) -> Any:
    return [(n.id, n.label, sorted(n.inputs.items())) for n in case.plan.nodes]


_TINY_MODEL: dict = {}


def tiny_model():
    """The built-in tiny architecture on the meta device (no weights), built once: module names and shapes."""
    if "model" not in _TINY_MODEL:
        import torch
        from transformers import AutoModelForCausalLM, LlamaConfig

        from llmpipe.models.tiny import SPECS

        spec = {k: v for k, v in SPECS["builtin:tiny-random"].items() if k != "seed"}
        with torch.device("meta"):
            _TINY_MODEL["model"] = AutoModelForCausalLM.from_config(LlamaConfig(**spec))
    return _TINY_MODEL["model"]


@probe("LoRA config")
def lora(case: Case) -> Any:
    from llmpipe.models.adapters import lora_config

    c = lora_config(case.obj, tiny_model())
    return _jsonable({k: sorted(v) if isinstance(v, set) else v for k, v in c.to_dict().items()})


@probe("OFT config")
def oft(case: Case) -> Any:
    from llmpipe.models.oft import oft_config

    c = oft_config(case.obj, tiny_model())
    return _jsonable({k: sorted(v) if isinstance(v, set) else v for k, v in c.to_dict().items()})


@probe("trainable parameters (freeze)")
def freeze(case: Case) -> Any:
    from llmpipe.models.freeze import apply_freeze

    model = tiny_model()
    apply_freeze(model, case.obj)
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)


@probe("preference trainer config")
def preference(case: Case) -> Any:
    from llmpipe.training.preference import trainer_setup

    trainer, config, kw = trainer_setup(case.obj)
    return _jsonable({"trainer": trainer.__name__, "config": config.__name__, **kw})


@probe("hub options")
def hub(case: Case) -> Any:
    from llmpipe.models.hub import hub_kwargs

    return _jsonable(hub_kwargs(case.obj.model))


@probe("model config")
def model_config(case: Case) -> Any:
    from transformers import LlamaConfig

    from llmpipe.models.patches import patch_config
    from llmpipe.models.tiny import SPECS

    config = LlamaConfig(**{k: v for k, v in SPECS["builtin:tiny-random"].items() if k != "seed"})
    patch_config(config, case.obj, training=True, log=lambda _m: None)
    return _jsonable(config.to_dict())


@probe("quantization options")
def quantization(case: Case) -> Any:
    import torch

    from llmpipe.models.quantization import load_kwargs

    kw = load_kwargs(case.obj, torch.bfloat16)
    qc = kw.get("quantization_config")
    return _jsonable({**kw, "quantization_config": qc.to_dict() if qc is not None else None})


@probe("vLLM engine arguments")
def vllm(case: Case) -> Any:
    from types import SimpleNamespace

    from llmpipe.infer.vllm_backend import engine_args

    adapters = list(case.obj.model.adapter_name_or_path)
    ref = SimpleNamespace(model="m", tokenizer="t", adapters=adapters)
    return _jsonable(engine_args(ref, case.obj))


@probe("launch arguments")
def launch_args(case: Case) -> Any:
    from llmpipe.training.launch_args import launch_arguments

    return _jsonable(launch_arguments(case.obj, environ={"WORLD_SIZE": "2"}))


@probe("launch command")
def launch_command(case: Case) -> Any:
    from llmpipe.launch.command import deepspeed_argv, launcher_name, torchrun_argv

    launch = case.obj.launch
    if launcher_name(launch) == "deepspeed":
        return deepspeed_argv(launch, Path("spec.json"), python="python", port=1)
    return torchrun_argv(launch, Path("spec.json"), log_dir=Path("logs"), run_id="r", python="python")


@probe("fp8 recipe")
def fp8_recipe(case: Case) -> Any:
    from llmpipe.config.rules.fp8 import resolve_backend
    from llmpipe.training.fp8 import recipe_kwargs

    t = case.obj.train
    backend = resolve_backend(t.fp8_backend) if t.fp8 else None
    return {"fp8": t.fp8, "asked": t.fp8_backend, "backend": backend, **(recipe_kwargs(t, backend) if backend else {})}


@probe("SwanLab run")
def swanlab_run(case: Case) -> Any:
    from llmpipe.training.swanlab_run import init_kwargs

    t = case.obj.train
    return {**init_kwargs(case.obj, Path("swanlog")), "lark": [t.swanlab_lark_webhook_url, bool(t.swanlab_lark_secret)],
            "login": bool(t.swanlab_api_key)}


@probe("Ray Train settings")
def ray_settings(case: Case) -> Any:
    from llmpipe.launch.ray_train import plan

    return _jsonable(plan(case.obj.launch, False, Path("work"), "0" * 64))


@probe("export writer")
def export_writer(case: Case) -> Any:
    import torch

    from llmpipe.exporting.shards import shard_bytes, write_shards

    o = case.obj.export
    out = case.workdir / "export"
    out.mkdir(exist_ok=True)
    write_shards(iter([("w", torch.zeros(2))]), out, shard_bytes(o.size), o.legacy_format, None)
    return {"shard_bytes": shard_bytes(o.size), "files": sorted(p.name for p in out.iterdir())}


@probe("training dtype")
def train_dtype(case: Case) -> Any:
    from llmpipe.models.loading import torch_dtype

    return str(torch_dtype(case.obj))


@probe("Trainer callbacks")
def callbacks(case: Case) -> Any:
    from llmpipe.training.progress import trainer_callbacks

    return [[type(cb).__name__, getattr(cb, "early_stopping_patience", None), _jsonable(getattr(cb, "settings", None))]
            for cb in trainer_callbacks(case.obj, lambda _m: None)]


@probe("tracker log folder")
def tracker_folder(case: Case) -> Any:
    from llmpipe.training.metrics import logging_dir

    return str(logging_dir(case.obj, Path("default"), Path("job")))


@probe("the server")
def server(case: Case) -> Any:
    """serve.main with the session it would open (no model) and a server factory that records what it is given
    instead of binding the port: the App (model id, gate, limits, image limits) and the host and port."""
    from types import SimpleNamespace

    import llmpipe.interactive as interactive
    import llmpipe.serve as serve

    seen: dict = {}
    backend = SimpleNamespace(engine_limit=None, name="probe", close=lambda: None)
    session = SimpleNamespace(obj=case.obj, recipe=None, backend=backend, note="", ref=SimpleNamespace(describe=str))

    def make_server(app, host, port):
        seen.update(host=host, port=port, model=app.model_id, slots=app.gate.slots, queue=app.gate.queue,
                    limits=dataclasses.asdict(app.limits), threads=app.threads.total_tokens,
                    images=dataclasses.asdict(app.images))
        raise OSError("not binding (flag-effect probe)")

    saved = interactive.open_session, serve.make_server
    interactive.open_session, serve.make_server = (lambda *_a, **_k: session), make_server
    try:
        import contextlib
        import io

        with contextlib.redirect_stderr(io.StringIO()):
            serve.main([])
    finally:
        interactive.open_session, serve.make_server = saved
    return _jsonable(seen)


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


def _cpu_tiny():
    """A fresh built-in tiny model with real (random) weights on the CPU: optimizers and BAdam change it."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from llmpipe.models.tiny import SPECS

    if "cpu" not in _TINY_MODEL:
        torch.manual_seed(0)
        spec = {k: v for k, v in SPECS["builtin:tiny-random"].items() if k != "seed"}
        _TINY_MODEL["cpu"] = AutoModelForCausalLM.from_config(LlamaConfig(**spec))
    return copy.deepcopy(_TINY_MODEL["cpu"])


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


class _Stop(Exception):
    """Raised by a probe's recorder once it has seen what it came for."""


def _patched(patches: list, fn: Callable[[], Any]) -> Any:
    """``fn()`` with ``(owner, name, value)`` attributes set, restored afterwards."""
    saved = [(o, n, getattr(o, n)) for o, n, _ in patches]
    try:
        for o, n, v in patches:
            setattr(o, n, v)
        return fn()
    finally:
        for o, n, v in saved:
            setattr(o, n, v)


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


def _word_tokenizer():
    """A fresh word-level tokenizer of the tiny model's vocabulary size (the tokenizer options change it)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(1998)} | {"<unk>": 1998, "<pad>": 1999}   # 48 spare embedding rows
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")


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


@probe("sweep summary")
def sweep_summary(case: Case) -> Any:
    """hydra_callbacks.PreflightCallback.on_multirun_end on the case's configuration (with a hydra.sweep.dir) over
    a results table of two jobs (objective 0.5 and 0.7): the summary it prints, whose best job follows
    run.objective_mode (the plot and the global HydraConfig left out)."""
    import contextlib
    import io

    from omegaconf import OmegaConf

    import llmpipe.hydra_callbacks as callbacks
    import llmpipe.pipeline.sweep as sweep

    folder = case.workdir / "sweep"
    if not folder.exists():
        for job, value in ((0, 0.5), (1, 0.7)):
            sweep.append_row(folder, {"job": job, "overrides": f"lora.rank={8 * (job + 1)}", "objective": "eval_loss",
                                      "value": value, "stages_ran": 1, "stages_cached": 0, "metrics": {},
                                      "job_dir": f"job{job}"})
    config = OmegaConf.create(OmegaConf.to_container(case.cfg, resolve=False))
    config.hydra = {"sweep": {"dir": str(folder)}}
    out = io.StringIO()
    patches = [(callbacks, "expose_master_config", lambda _c: None), (sweep, "plot_results", lambda *_a: None)]
    with contextlib.redirect_stdout(out):
        _patched(patches, lambda: callbacks.PreflightCallback().on_multirun_end(config))
    return out.getvalue().replace(str(folder), "<sweep>")


@probe("causal collator")
def causal_collator(case: Case) -> Any:
    """training/padding_free.causal_collator as train_causal calls it, for the CPU tiny model and tokenized rows:
    the collator it returns (padded or padding-free) and what it logs."""
    if "collator" in case._cache:
        return case._cache["collator"]
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq

    from llmpipe.training.padding_free import causal_collator as make

    rows = Dataset.from_dict({"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 1]], "labels": [[1, 2, 3]]})
    log: list = []
    collator = make(case.obj, _cpu_tiny(), rows, DataCollatorForSeq2Seq(_word_tokenizer()), log.append)
    case._cache["collator"] = [type(collator).__name__, log]
    return case._cache["collator"]


@probe("model card")
def model_card(case: Case) -> Any:
    """exporting/card.render for an export without training (the run's name is in the card's table)."""
    from llmpipe.exporting.card import render

    return render(case.obj, fingerprint="f", title="t", adapters=[], train=None, merge=None, quantize=None,
                  verified={}, weights={"shards": 1, "total_bytes": 0})


@probe("training outputs")
def training_outputs(case: Case) -> Any:
    """training/causal.save_outputs after a (recorded) one-step training: what it saves where, the files it
    writes, and the loss plot it asks for (training/plot.save_loss_plot recorded: no matplotlib drawing)."""
    from types import SimpleNamespace

    import llmpipe.models.trainable as trainable
    import llmpipe.training.plot as plot
    from llmpipe.training.causal import save_outputs

    calls: list = []
    out = case.workdir / "train-out"
    out.mkdir(exist_ok=True)
    trainer = SimpleNamespace(model=None, args=SimpleNamespace(world_size=1),
                              state=SimpleNamespace(log_history=[{"loss": 1.0, "step": 1}]))
    ctx = SimpleNamespace(obj=case.obj, out=out, initial_adapter=None, log=lambda _m: None, name="train")
    patches = [(trainable, "save", lambda _m, where, *_a, **_k: calls.append(["save", where.name])),
               (plot, "save_loss_plot", lambda _h, path, title, _log: calls.append(["plot", path.name, title]))]
    _patched(patches, lambda: save_outputs(ctx, trainer, SimpleNamespace(save_pretrained=lambda _p: None), {}))
    return [calls, sorted(p.name for p in out.iterdir())]


@probe("TrainingArguments.use_cpu on a GPU machine")
def use_cpu(case: Case) -> Any:
    """training/args.training_arguments where CUDA is reported available (args._cuda): whether it keeps training on
    the CPU. Without a GPU every run trains on the CPU, whatever train.use_cpu says."""
    import llmpipe.training.args as args

    ta = _patched([(args, "_cuda", lambda: True)],
                  lambda: args.training_arguments(case.obj, Path("flag-effect-out"), has_eval=True))
    return ta.use_cpu


@probe("load and adapt stages")
def load_and_adapt(case: Case) -> Any:
    """The model the load stage starts from (stages/load.base_model_source, with the built-in model builder
    recorded) and stages/adapt.run on the CPU tiny model (weights loading and PEFT's adapter loading recorded):
    the adapter it creates or resumes, and from where."""
    if "adapt" in case._cache:
        return case._cache["adapt"]
    from types import SimpleNamespace

    import peft

    import llmpipe.models.builtin as builtin
    import llmpipe.models.loading as loading
    import llmpipe.stages.adapt as adapt
    from llmpipe.stages.load import base_model_source

    calls: list = []

    def peft_load(model, ref, **kw):
        calls.append(["PeftModel", os.path.relpath(str(ref), case.workdir.parent), kw])
        return peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))

    out = case.workdir / "adapt-out"
    out.mkdir(exist_ok=True)
    ctx = SimpleNamespace(obj=case.obj, inputs={}, input=lambda _k: case.workdir, out=out, cache_root=case.workdir,
                          log=lambda _m: None)
    patches = [(builtin, "ensure_builtin", lambda name, _root: (calls.append(["builtin", name]), name)[1]),
               (loading, "load_causal_lm", lambda source, *_a, **_k: _cpu_tiny()),
               (adapt, "read_source", lambda _d: "base"),
               (peft.PeftModel, "from_pretrained", staticmethod(peft_load))]

    def run():
        calls.append(["load", base_model_source(ctx)])
        calls.append(["adapt", adapt.run(ctx)["metrics"], json.loads((out / "params.json").read_text())["adapter"]])

    _patched(patches, run)
    case._cache["adapt"] = _jsonable(calls)
    return case._cache["adapt"]


@probe("adapter saving")
def adapter_saving(case: Case) -> Any:
    """models/trainable.save of a LoRA model made by the case's LoRA config on the CPU tiny model (PiSSA: its
    initial adapter saved first, as the adapt stage publishes it): what it saves and the saved adapter's rank."""
    if "adapter saving" in case._cache:
        return case._cache["adapter saving"]
    from peft import get_peft_model

    from llmpipe.models.adapters import lora_config
    from llmpipe.models.trainable import save

    model = _cpu_tiny()
    model = get_peft_model(model, lora_config(case.obj, model))
    initial, out = case.workdir / "initial-adapter", case.workdir / "saved-adapter"
    model.save_pretrained(str(initial))
    log: list = []
    save(model, out, case.obj, log=log.append, initial_adapter=initial)
    saved = json.loads((out / "adapter_config.json").read_text())
    case._cache["adapter saving"] = _jsonable([log, saved.get("r"), str(saved.get("init_lora_weights"))])
    return case._cache["adapter saving"]


@probe("model placement")
def placement(case: Case) -> Any:
    """The from_pretrained keywords that quantize and place the weights (device map, offload folder)."""
    import torch

    from llmpipe.models.loading import placement_kwargs

    kw = placement_kwargs(case.obj, torch.bfloat16, quantize=case.obj.quantization.bit is not None)
    qc = kw.get("quantization_config")
    return _jsonable({**kw, "quantization_config": qc.to_dict() if qc is not None else None})


@probe("adapter loading")
def adapter_loading(case: Case) -> Any:
    """The keywords every adapter of model.adapter_name_or_path is loaded with (merge and export included)."""
    from llmpipe.models.adapters import _load_kwargs

    return _jsonable(_load_kwargs(case.obj))


@probe("final model link")
def final_link(case: Case) -> Any:
    """The folder the final model is linked into after a run (train.output_dir, relative to the job folder)."""
    from llmpipe.pipeline.outputs import output_folder

    folder = output_folder(case.obj.train.output_dir, case.workdir)
    return None if folder is None else str(folder)
