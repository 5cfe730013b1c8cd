"""What the Trainer gives the other stages and PPO's own loop gets here, through accelerate: the device (the
local GPU, or the CPU with ``train.use_cpu``), mixed precision (``train.bf16``/``fp16``), the experiment trackers of
``train.report_to`` (event files in ``train.logging_dir``), the log level (``train.log_level``), Liger's kernels
(``model.enable_liger_kernel``) and Unsloth-style offloaded checkpointing (``model.use_unsloth_gc``).

PPO runs in one process: a launched (torchrun/DeepSpeed) PPO is refused in pre-flight (rule ppo-launch).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmpipe.training.metrics import logging_dir


def trackers(cfg: Any) -> list[str]:
    names = cfg.train.report_to or []
    names = names.split(",") if isinstance(names, str) else names
    return [r.strip() for r in names if r.strip() and r.strip() != "none"]


def make_accelerator(cfg: Any, default_log_dir: Path, job_dir: Path | None):
    """The Accelerator of one PPO run: device, mixed precision and trackers as the train family says."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)   # as TrainingArguments does: each run sets its own
    t = cfg.train
    precision = "bf16" if (t.bf16 or t.pure_bf16) else "fp16" if t.fp16 else "no"
    names = trackers(cfg)
    log_dir = logging_dir(cfg, default_log_dir, job_dir)
    if names:
        log_dir.mkdir(parents=True, exist_ok=True)
    import torch

    cpu = bool(t.use_cpu) or not torch.cuda.is_available()
    # pure bf16 keeps the weights in bf16 (loaded so) and needs no autocast; mixed bf16 autocasts the forward
    return Accelerator(cpu=cpu, mixed_precision="no" if t.pure_bf16 else precision,
                       log_with=names or None, project_dir=str(log_dir))


def start_trackers(acc, cfg: Any, name: str) -> None:
    """Open the trackers with the run's hyper-parameters (the train and ppo families; never a secret)."""
    if trackers(cfg):
        acc.init_trackers(cfg.train.run_name or name, config=hyperparameters(cfg))


def hyperparameters(cfg: Any) -> dict[str, Any]:
    from dataclasses import asdict

    from llmpipe.secrets import secret_paths

    hidden = set(secret_paths())
    out: dict[str, Any] = {}
    for family in ("train", "ppo"):
        for key, value in asdict(getattr(cfg, family)).items():
            path = f"{family}.{key}"
            if path in hidden or value is None or isinstance(value, (dict, list, tuple)):
                continue
            out[path] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def set_log_level(cfg: Any) -> None:
    """train.log_level on this (single, main) process, as the Trainer does: passive keeps the library default."""
    level = cfg.train.log_level
    if level and level != "passive":
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(hf_logging.get_log_levels_dict()[level])


def place(model, device, log: Callable[[str], None]) -> Any:
    """``model`` on ``device``; quantized weights stay where loading placed them (they cannot be moved)."""
    if model is None:
        return None
    from llmpipe.models.quantization import is_quantized

    if is_quantized(model):
        return model
    current = next(model.parameters()).device
    if current != device:
        log(f"moving {type(model).__name__} from {current} to {device}")
        model = model.to(device)
    return model


def apply_kernels(policy, cfg: Any, log: Callable[[str], None]) -> None:
    """Liger's fused kernels on the policy (GPU; pre-flight refuses them without one), as the Trainer applies them."""
    if not cfg.model.enable_liger_kernel:
        return
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    _apply_liger_kernel_to_instance(model=base)
    log("Liger kernels applied to the policy")


def enable_checkpointing(policy, cfg: Any) -> None:
    """Gradient checkpointing of the policy (off with model.disable_gradient_checkpointing); with
    model.use_unsloth_gc the saved activations wait in host memory."""
    if cfg.model.disable_gradient_checkpointing:
        return
    kwargs = {"use_reentrant": bool(getattr(cfg.model, "use_reentrant_gc", True))}
    if hasattr(policy, "activation_checkpointing_enable"):
        policy.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs,
                                               offload=bool(cfg.model.use_unsloth_gc))
    elif hasattr(policy, "gradient_checkpointing_enable"):
        policy.gradient_checkpointing_enable(kwargs)
