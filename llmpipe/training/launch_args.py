"""TrainingArguments settings of a spawned rank: backend, timeout, DeepSpeed config, FSDP config.

Empty for a local run and outside a launcher (transformers crashes when ``ddp_backend`` is set in a single
process without a process group). On CPU the backend is gloo, which DeepSpeed also uses there."""
from __future__ import annotations

import os
from typing import Any

from llmpipe.config.presets import load_deepspeed_config

FSDP_STRATEGIES = {"full_shard": True, "shard_grad_op": False}   # -> FSDP2 reshard_after_forward
FSDP_FLAGS = ("offload", "auto_wrap")
DEFAULT_FSDP = "full_shard auto_wrap"


def fsdp_options(value: Any) -> list[str]:
    return str(value or DEFAULT_FSDP).replace(",", " ").split()


def fsdp_config(launch: Any) -> dict[str, Any]:
    """transformers' ``fsdp_config`` (FSDP2 through accelerate) from ``launch.fsdp`` options; the user's
    ``launch.fsdp_config`` entries win."""
    opts = fsdp_options(launch.fsdp)
    strategy = next((o for o in opts if o in FSDP_STRATEGIES), "full_shard")
    out: dict[str, Any] = {
        "version": 2,
        "reshard_after_forward": FSDP_STRATEGIES[strategy],
        "cpu_offload": "offload" in opts,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP" if "auto_wrap" in opts else "NO_WRAP",
        "state_dict_type": "FULL_STATE_DICT",   # the saved model is a plain transformers checkpoint
    }
    out.update({k[5:] if k.startswith("fsdp_") else k: v for k, v in dict(launch.fsdp_config or {}).items()})
    return out


def uses_cuda(cfg: Any) -> bool:
    import torch

    return torch.cuda.is_available() and not cfg.train.use_cpu


def launch_arguments(cfg: Any, environ=os.environ) -> dict[str, Any]:
    """Extra TrainingArguments for a rank started by llmpipe.launch ({} otherwise)."""
    launch = cfg.launch
    if launch.kind == "local" or "WORLD_SIZE" not in environ:
        return {}
    kw: dict[str, Any] = {"ddp_timeout": launch.ddp_timeout}
    backend = launch.ddp_backend or (None if uses_cuda(cfg) else "gloo")
    if backend:
        kw["ddp_backend"] = backend
    if launch.kind == "deepspeed":
        kw["deepspeed"] = load_deepspeed_config(launch.deepspeed)
    elif launch.kind == "fsdp":
        kw["fsdp"] = True
        kw["fsdp_config"] = fsdp_config(launch)
    elif cfg.train.finetuning_type == "lora":
        kw["ddp_find_unused_parameters"] = False   # every LoRA weight gets a gradient: skip the graph scan
    return kw
