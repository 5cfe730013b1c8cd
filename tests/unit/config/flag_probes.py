"""Support of tests/unit/config/test_flag_effects.py, the probes: here the registry, the shared helpers and the
probes of configuration objects; flag_probes_training.py and flag_probes_outputs.py hold the probes that run
pieces of the pipeline (the values, contexts and known gaps are in flag_cases.py).

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


def _word_tokenizer():
    """A fresh word-level tokenizer of the tiny model's vocabulary size (the tokenizer options change it)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(1998)} | {"<unk>": 1998, "<pad>": 1999}   # 48 spare embedding rows
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")


# the probes of the pipeline's runs and outputs register themselves in PROBES when imported (they use the helpers
# above, hence the import at the end)
from tests.unit.config import flag_probes_outputs, flag_probes_training  # noqa: E402,F401
