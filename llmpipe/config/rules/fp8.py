"""fp8 rules (train.fp8, llmpipe.training.fp8): a CUDA GPU of compute capability 8.9 or newer, an installed
backend accelerate has a recipe for, the Trainer stages it is wired into, and its options only with it."""
from __future__ import annotations

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import (
    get,
    problem,
    quant_bit,
    stage,
    uses_deepspeed,
    uses_fsdp,
)

STAGES = ("pt", "sft")
MIN_CAPABILITY = (8, 9)
BACKEND_MODULES = {"torchao": "torchao", "te": "transformer_engine"}


def resolve_backend(name: str, has=None) -> str | None:
    """torchao or te for ``train.fp8_backend`` (auto: torchao when installed, else Transformer Engine); None
    when no usable backend is installed."""
    if has is None:
        from llmpipe.config.environment import current

        has = current().has
    if name == "auto":
        return next((b for b, mod in BACKEND_MODULES.items() if has(mod)), None)
    return name if name in BACKEND_MODULES and has(BACKEND_MODULES[name]) else None


def capability() -> tuple[int, int] | None:
    """The first visible CUDA GPU's compute capability (None without one)."""
    try:
        import torch

        return tuple(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None
    except Exception:   # noqa: BLE001  (a broken driver reads as no GPU)
        return None


@rule("fp8-device", keys=["train.fp8", "train.use_cpu"], bad=[["train.fp8=true"]], good=[["train.bf16=true"]],
      env={"gpu_count": 0})
def fp8_device(cfg, env):
    """fp8 matmuls run on CUDA GPUs only."""
    if get(cfg, "train.fp8") and (not env.cuda or get(cfg, "train.use_cpu")):
        yield problem("fp8-device", "train.fp8", True, "fp8 matmuls need a CUDA GPU (compute capability >= 8.9), and"
                      " this run has none" + (" (train.use_cpu=true)" if env.cuda else ""), "train.fp8=false on CPU",
                      "train.bf16=true, or train.fp8=false")


@rule("fp8", keys=["train.fp8", "train.fp8_backend", "train.fp8_enable_fsdp_float8_all_gather", "train.use_cpu",
                   "train.stage", "launch.deepspeed", "launch.fsdp", "quantization.bit"],
      bad=[["train.fp8_backend=torchao"], ["train.fp8=true", "train.fp8_backend=msamp"],
           ["train.fp8=true", "train.fp8_enable_fsdp_float8_all_gather=true"]],
      good=[["train.fp8=true", "train.fp8_backend=torchao"]],
      env={"gpu_count": 1, "available_packages": frozenset({"torchao"})})
def fp8(cfg, env):
    """fp8 trains on CUDA GPUs of compute capability >= 8.9 (Ada, Hopper and newer) with torchao or Transformer
    Engine, through the Trainer of the pt and sft stages, without DeepSpeed or a quantized base."""
    on = bool(get(cfg, "train.fp8"))
    if not on:
        for key, default in (("train.fp8_backend", "auto"), ("train.fp8_enable_fsdp_float8_all_gather", False)):
            if get(cfg, key, default) != default:
                yield problem("fp8", key, get(cfg, key), "an fp8 option, and train.fp8 is false", "with train.fp8=true,"
                              " or unset", "train.fp8=true")
        return
    if not env.cuda or get(cfg, "train.use_cpu"):
        return   # rule fp8-device
    cap = capability()
    if cap is not None and cap < MIN_CAPABILITY:
        yield problem("fp8", "train.fp8", True, f"this GPU's compute capability is {cap[0]}.{cap[1]}; fp8 matmuls need"
                      " 8.9 or newer (Ada, Hopper)", "train.fp8=false here", "train.bf16=true")
    backend = get(cfg, "train.fp8_backend", "auto")
    if backend == "msamp":
        yield problem("fp8", "train.fp8_backend", backend, "accelerate (1.16) has no MS-AMP fp8 recipe any more",
                      "auto, torchao, te", "train.fp8_backend=torchao")
    elif resolve_backend(backend, env.has) is None:
        yield problem("fp8", "train.fp8_backend", backend, "no fp8 backend for it is installed"
                      + (" (torchao or transformer_engine)" if backend == "auto" else ""), "an installed backend",
                      "pip install torchao" if backend != "te" else "pip install transformer_engine[pytorch]")
    if get(cfg, "train.fp8_enable_fsdp_float8_all_gather") and (not uses_fsdp(cfg) or
                                                                 resolve_backend(backend, env.has) != "torchao"):
        yield problem("fp8", "train.fp8_enable_fsdp_float8_all_gather", True, "float8 all-gather is torchao's, under"
                      " FSDP2", "with launch=fsdp and train.fp8_backend=torchao", "launch=fsdp")
    if stage(cfg) not in STAGES:
        yield problem("fp8", "train.fp8", True, f"fp8 is wired into the Trainer of {', '.join(STAGES)}; train.stage="
                      f"{stage(cfg)} trains through TRL's trainers", "train.stage=pt or sft", "train.bf16=true")
    if uses_deepspeed(cfg):
        yield problem("fp8", "train.fp8", True, "DeepSpeed keeps its own precision settings; accelerate's fp8 recipe"
                      " is not passed to it", "launch=ddp or fsdp", "launch=ddp")
    if quant_bit(cfg):
        yield problem("fp8", "train.fp8", True, f"the base is quantized ({quant_bit(cfg)}-bit): there are no"
                      " plain linear layers to run in fp8", "quantization.bit=null", "quantization.bit=null")
