"""Helpers shared by the rule modules: safe field access, Problem construction, derived facts
(world size, DeepSpeed ZeRO stage, adapters, offline mode). Import-light: no torch, no transformers."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from llmpipe.config.presets import DS_PRESETS
from llmpipe.problems import Problem

_UNSET = object()

CUSTOM_OPTIMIZERS = ("galore.use_galore", "apollo.use_apollo", "badam.use_badam", "badam.use_adam_mini", "muon.use_muon")


def get(cfg: Any, path: str, default: Any = None) -> Any:
    """``cfg.a.b`` by dotted path; ``default`` when a part is missing or None (a family may lack a field).
    A list flag reads as a list (``[]`` when unset): llmpipe.config.typed split it."""
    node = cfg
    for part in path.split("."):
        node = getattr(node, part, _UNSET) if node is not None else _UNSET
        if node is _UNSET:
            return default
    return default if node is None else node


def problem(rule: str, key: str, value: Any, message: str, allowed: str = "", fix: str = "") -> Problem:
    """A Problem; a list flag's value is shown as it is written, comma-separated."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ",".join(value) if value else None
    return Problem(key=key, value=value, message=message, allowed=allowed, fix=fix, rule=rule)


def given(value: Any) -> bool:
    """Whether a setting is given: not None, and not an empty list flag."""
    return value is not None and value != []


def stage(cfg: Any) -> str:
    return str(get(cfg, "train.stage", "sft"))


def ft_type(cfg: Any) -> str:
    return str(get(cfg, "train.finetuning_type", "lora"))


def trains(cfg: Any) -> bool:
    return bool(get(cfg, "train.do_train", False))


def evaluates(cfg: Any) -> bool:
    return bool(get(cfg, "train.do_eval", False)) or str(get(cfg, "train.eval_strategy", "no")) != "no"


def adapters(cfg: Any) -> list[str]:
    return get(cfg, "model.adapter_name_or_path", [])


def quant_bit(cfg: Any) -> int | None:
    return get(cfg, "quantization.bit")


def launch_kind(cfg: Any) -> str:
    kind = get(cfg, "launch.kind")
    if kind:
        return str(kind)
    if uses_deepspeed(cfg):
        return "deepspeed"
    if get(cfg, "launch.fsdp"):
        return "fsdp"
    return "local"


def uses_deepspeed(cfg: Any) -> bool:
    return bool(get(cfg, "launch.deepspeed")) or get(cfg, "launch.kind") == "deepspeed"


def uses_fsdp(cfg: Any) -> bool:
    fsdp = get(cfg, "launch.fsdp")
    if isinstance(fsdp, str):
        fsdp = fsdp.strip().lower() not in ("", "false", "no", "none")
    return bool(fsdp) or get(cfg, "launch.kind") == "fsdp"


def world_size(cfg: Any) -> int:
    """Processes the launch settings ask for (1 for an in-process local run)."""
    if launch_kind(cfg) == "local":
        return 1
    if launch_kind(cfg) == "ray":
        return max(1, int(get(cfg, "launch.ray_num_workers", 1)))
    nproc = get(cfg, "launch.nproc_per_node", 1)
    nnodes = get(cfg, "launch.nnodes", 1)
    try:
        return max(1, int(nproc)) * max(1, int(nnodes))
    except (TypeError, ValueError):  # "auto", "gpu": decided by the launcher
        return 2


def zero_stage(cfg: Any) -> int | None:
    """ZeRO stage of launch.deepspeed (preset name or JSON file), None without DeepSpeed or when unknown."""
    ds = get(cfg, "launch.deepspeed")
    if not ds:
        return None
    if isinstance(ds, dict) or hasattr(ds, "keys"):
        try:
            return int(ds["zero_optimization"]["stage"])
        except Exception:
            return None
    name = str(ds)
    if name in DS_PRESETS:
        return DS_PRESETS[name]
    path = Path(name).expanduser()
    if path.is_file():
        try:
            return int(json.loads(path.read_text())["zero_optimization"]["stage"])
        except Exception:
            return None
    low = path.name.lower()
    for s in (3, 2, 1, 0):
        if f"z{s}" in low or f"zero{s}" in low or f"stage{s}" in low or f"stage_{s}" in low:
            return s
    return None


def fmt(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)
