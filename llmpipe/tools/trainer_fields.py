"""Generate llmpipe/config/families/trainer_fields.py from the installed transformers' Seq2SeqTrainingArguments.

Every init field of transformers' training arguments that llmpipe's train family does not already declare becomes
either a typed pass-through parameter ``train.<field>`` (unset = transformers' own default, passed to the
Trainer only when set), or an *owned* field: one that llmpipe sets itself from another parameter, refused with a
pointer to it. The config layer cannot import transformers (pre-flight must stay fast), so the table is a
generated module; ``tests/unit/config/test_trainer_fields.py`` fails when the installed transformers no longer
matches it, and this command brings a newer transformers' fields in:

    python -m llmpipe.tools.trainer_fields --write
"""
from __future__ import annotations

import dataclasses
import enum
import sys
import typing
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "config" / "families" / "trainer_fields.py"

# Fields llmpipe sets itself: refused under train.* with where they live instead.
OWNED: dict[str, str] = {
    "local_rank": "set for each rank by the launcher",
    "deepspeed": "launch.deepspeed (a preset name or a JSON file)",
    "fsdp": "launch.fsdp", "fsdp_config": "launch.fsdp_config",
    "ddp_backend": "launch.ddp_backend", "ddp_timeout": "launch.ddp_timeout",
    "parallelism_config": "launch.* (an accelerate ParallelismConfig object has no config-file form)",
    "resume_from_checkpoint": "each stage resumes from its own checkpoints in the store: run the same command again",
    "remove_unused_columns": "llmpipe's collators decide the model inputs",
    "label_names": "llmpipe's collators decide the model inputs",
    "disable_tqdm": "llmpipe prints one progress line per logging step (train.logging_steps)",
    "use_liger_kernel": "model.enable_liger_kernel",
    "use_cache": "infer.use_kv_cache (training always runs without the KV cache)",
    "include_num_input_tokens_seen": "train.include_effective_tokens_per_second",
    "hub_token": "model.hf_hub_token or the HF_TOKEN environment variable (redacted everywhere)",
    "optim_target_modules": "galore.target (the optimizers that take target modules)",
    "generation_max_length": "generate.max_length (the predict stage generates with generate.*)",
    "generation_num_beams": "data.eval_num_beams",
    "generation_config": "generate.* (the predict stage's generation settings)",
    "sortish_sampler": "nothing: only transformers' Seq2SeqTrainer (encoder-decoder models) samples that way",
    "liger_kernel_config": "model.enable_liger_kernel (Liger's kernels as the Trainer applies them by default)",
    "length_column_name": "nothing: llmpipe's rows carry no length column (group_by_length measures input_ids)",
    "include_for_metrics": "train.compute_accuracy (llmpipe's metrics decide what they read)",
    "batch_eval_metrics": "train.compute_accuracy (llmpipe's metrics are computed over the whole evaluation set)",
    "activation_checkpointing": "model.disable_gradient_checkpointing (on by default) and model.gradient_checkpointing",
    "activation_checkpointing_kwargs": "model.use_reentrant_gc and model.gradient_checkpointing",
}
# Older names translated onto llmpipe's parameters (llmpipe.config.translate), declared as fields so that
# LLaMA-Factory recipes that set them are accepted.
TRANSLATED = {
    "gradient_checkpointing": "model.disable_gradient_checkpointing (its negation)",
    "gradient_checkpointing_kwargs": "model.use_reentrant_gc ({\"use_reentrant\": ...} only)",
}
# Choices transformers documents in the help text only (its annotation is a plain str)
CHOICES: dict[str, tuple[str, ...]] = {
    "train_sampling_strategy": ("random", "sequential", "group_by_length", "batch_rebalance"),
    "dataloader_multiprocessing_context": ("fork", "spawn", "forkserver"),
    "torch_compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
}
# Flags transformers 5 removed that LLaMA-Factory recipes still set: (name, type, where it is translated to)
REMOVED: tuple[tuple[str, str, str], ...] = (
    ("group_by_length", "bool", "train.train_sampling_strategy=group_by_length"),
)
# Pass-through fields that change nothing a stage stores: not in the train stage's fingerprint.
VOLATILE = {
    "logging_first_step", "log_on_each_node", "logging_nan_inf_filter", "skip_memory_metrics", "project",
    "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id", "dataloader_pin_memory",
    "dataloader_persistent_workers", "dataloader_prefetch_factor", "dataloader_multiprocessing_context",
    "torch_empty_cache_steps", "save_on_each_node",
}


def _first_sentence(text: str) -> str:
    text = " ".join((text or "").split())
    for end in (". ", "? "):
        if end in text:
            text = text.split(end, 1)[0] + end.strip()
            break
    return text.replace("%%", "%").rstrip(".") + "."


def _kind(hint) -> tuple[str, tuple | None] | None:
    """(python type name, choices) for a field's annotation, or None when it has no config-file form."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (
        typing.Union, getattr(__import__("types"), "UnionType", typing.Union)) else [hint]
    choices: list = []
    names = set()
    for a in args:
        origin = typing.get_origin(a)
        if a is bool:
            names.add("bool")
        elif a is int:
            names.add("int")
        elif a is float:
            names.add("float")
        elif a is str:
            names.add("str")
        elif isinstance(a, type) and issubclass(a, enum.Enum):
            names.add("str")
            choices += [m.value for m in a]
        elif origin is typing.Literal:
            names.add("str")
            choices += [v for v in typing.get_args(a) if isinstance(v, str)]
        elif a is dict or origin is dict:
            names.add("dict")
        elif origin is list:
            names.add("list")
            inner = typing.get_args(a)
            if inner and isinstance(inner[0], type) and issubclass(inner[0], enum.Enum):
                choices += [m.value for m in inner[0]]
        elif a is Path:
            names.add("str")
        else:
            return None
    if "dict" in names:
        return "dict", None
    if names == {"bool"}:
        return "bool", None
    if names == {"int"}:
        return "int", None
    if names <= {"float", "int"}:
        return "float", None
    if names == {"list"} or names == {"list", "str"}:
        return "list", tuple(dict.fromkeys(choices)) or None
    if names == {"str"}:
        return "str", tuple(dict.fromkeys(choices)) or None
    return None


_TYPES = {"bool": "Optional[bool]", "int": "Optional[int]", "float": "Optional[float]", "str": "Optional[str]",
          "dict": "Dict[str, Any]", "list": "OptionalListFlag"}
# Fields that act only on a CUDA machine (pre-flight refuses them elsewhere)
GPU_ONLY = {"dataloader_pin_memory"}


def render() -> str:
    import transformers
    from transformers import Seq2SeqTrainingArguments

    from llmpipe.config.families.train import TrainConfig

    ours = {f.name for f in dataclasses.fields(TrainConfig)} - set(_generated_names())
    hints = typing.get_type_hints(Seq2SeqTrainingArguments)
    lines, passthrough, owned = [], [], dict(OWNED)
    for f in dataclasses.fields(Seq2SeqTrainingArguments):
        if not f.init or f.name in ours or f.name in OWNED:
            continue
        kind = _kind(hints.get(f.name))
        if kind is None:
            owned[f.name] = "nothing: it has no config-file form (a Python object)"
            continue
        typ, choices = kind
        choices = CHOICES.get(f.name, choices)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if isinstance(default, enum.Enum):
            default = default.value
        note = TRANSLATED.get(f.name)
        help_text = (f"Older flag (transformers' {f.name}): translated to {note}." if note else
                     _first_sentence(f.metadata.get("help", ""))
                     + f" Passed to transformers' TrainingArguments; unset = its default ({default!r}).")
        kw = [repr(None), repr(help_text)]
        if typ == "dict":   # an empty mapping is unset (Hydra merges ++train.<name>={...} into it)
            kw.append("default_factory=dict")
        if f.name in GPU_ONLY:
            kw.append("gpu_only=True")
        if choices:
            kw.append(f"choices={choices!r}")
        if typ == "list":
            kw.append("list_sep=','")
        if f.name in VOLATILE:
            kw.append("volatile=True")
        lines.append(f"    {f.name}: {_TYPES[typ]} = param(\n        " + ",\n        ".join(kw) + ",\n    )")
        if not note:
            passthrough.append(f.name)
    for name, typ, target in REMOVED:
        help_text = f"Older flag (removed in transformers 5): translated to {target}."
        lines.append(f"    {name}: {_TYPES[typ]} = param(\n        None,\n        {help_text!r},\n    )")
    owned_lines = "\n".join(f"    {k!r}: {v!r}," for k, v in sorted(owned.items()))
    return f'''"""Generated by `python -m llmpipe.tools.trainer_fields --write` from transformers {transformers.__version__}
(Seq2SeqTrainingArguments): do not edit by hand.

``TrainerFields`` holds every field of transformers' training arguments that the train family does not declare
itself, typed from transformers' own dataclass; unset (None) means transformers' default, and llmpipe passes a
field to the Trainer only when it is set (``PASSTHROUGH``). ``OWNED`` lists the fields llmpipe sets itself from
another parameter: they are refused under train.* with that parameter named.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from llmpipe.config.meta import OptionalListFlag, param

TRANSFORMERS_VERSION = {transformers.__version__!r}


@dataclass
class TrainerFields:
{chr(10).join(lines)}


PASSTHROUGH: tuple[str, ...] = {tuple(passthrough)!r}


def is_set(value: Any) -> bool:
    """Whether a field of this family was given a value (None and empty collections mean unset)."""
    return value is not None and not (isinstance(value, (str, list, tuple, dict)) and len(value) == 0)

OWNED: dict[str, str] = {{
{owned_lines}
}}
'''


def _generated_names() -> list[str]:
    try:
        from llmpipe.config.families import trainer_fields
    except ImportError:
        return []
    return [f.name for f in dataclasses.fields(trainer_fields.TrainerFields)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--write" in argv:
        TARGET.write_text(text)
        print(f"wrote {TARGET}")
        return 0
    if "--check" in argv:
        same = TARGET.is_file() and TARGET.read_text() == text
        print("up to date" if same else f"{TARGET} is out of date: python -m llmpipe.tools.trainer_fields --write")
        return 0 if same else 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
