"""Model options that change the model config before loading (RoPE scaling, MoE router loss) or patch the
loaded modules for training (upcast norms / LM-head output, mixture-of-depths conversion), and the
parameter-status printout."""
from __future__ import annotations

import math
from typing import Any, Callable

from llmpipe.errors import UserError

MOE_COEF_ATTRS = ("router_aux_loss_coef", "aux_loss_alpha", "aux_loss_coef")


class PatchError(UserError):
    """A model option cannot be applied to this model (message says why and what to do)."""


def _rope_update(params: dict, kind: str, factor: float, original: int) -> dict:
    new = {**params, "rope_type": kind, "factor": float(factor)}
    if kind in ("dynamic", "yarn", "llama3"):
        new["original_max_position_embeddings"] = original
    if kind == "llama3":
        new.setdefault("low_freq_factor", 1.0)
        new.setdefault("high_freq_factor", 4.0)
    return new


def rope_factor(config, cutoff_len: int) -> float:
    """RoPE scaling factor: how many times the context the data needs exceeds the model's own (>= 1)."""
    current = getattr(config, "max_position_embeddings", None)
    if not current or cutoff_len <= current:
        return 1.0
    return float(math.ceil(cutoff_len / current))


def apply_rope_scaling(config, cfg: Any, log: Callable[[str], None]) -> None:
    """model.rope_scaling: set the RoPE type in the config, with the factor data.cutoff_len needs."""
    kind = cfg.model.rope_scaling
    if not kind:
        return
    params = getattr(config, "rope_parameters", None)
    original = getattr(config, "max_position_embeddings", None)
    if not isinstance(params, dict) or not original:
        raise PatchError(f"model.rope_scaling={kind}: {config.model_type} has no RoPE parameters to scale")
    factor = rope_factor(config, int(cfg.data.cutoff_len))
    if "rope_type" in params or "rope_theta" in params:
        config.rope_parameters = _rope_update(params, kind, factor, original)
    else:   # one set of RoPE parameters per attention type (e.g. Gemma 3)
        config.rope_parameters = {k: _rope_update(v, kind, factor, original) for k, v in params.items()}
    config.max_position_embeddings = int(original * factor)
    note = "" if factor > 1 else f" (data.cutoff_len={cfg.data.cutoff_len} fits the model's {original} positions)"
    log(f"RoPE scaling: {kind}, factor {factor:g}{note}")


def apply_moe_aux_loss(config, cfg: Any, training: bool, log: Callable[[str], None]) -> None:
    coef = cfg.model.moe_aux_loss_coef
    attrs = [a for a in MOE_COEF_ATTRS if hasattr(config, a)]
    if coef is None:
        if attrs and hasattr(config, "output_router_logits"):
            config.output_router_logits = training   # the model's own coefficient acts while training
        return
    if not attrs:
        log(f"model.moe_aux_loss_coef={coef}: {config.model_type} is not a mixture-of-experts model; no effect")
        return
    for attr in attrs:
        setattr(config, attr, float(coef))
    if hasattr(config, "output_router_logits"):
        config.output_router_logits = training   # the auxiliary loss is only added when router logits are output
    log(f"MoE router auxiliary loss coefficient {coef} ({', '.join(attrs)})")


def patch_config(config, cfg: Any, *, training: bool, log: Callable[[str], None] = print) -> None:
    apply_rope_scaling(config, cfg, log)
    apply_moe_aux_loss(config, cfg, training, log)
    if training and hasattr(config, "use_cache"):
        config.use_cache = False   # no KV cache while training (and required with gradient checkpointing)


def _is_norm(module) -> bool:
    return "norm" in type(module).__name__.lower()


def upcast_layernorm(model) -> int:
    """Norm weights to fp32; their output is cast back to the input dtype so the next layer sees its own dtype."""
    import torch

    count = 0
    for module in model.modules():
        if not _is_norm(module) or not any(True for _ in module.parameters(recurse=False)):
            continue
        for p in module.parameters(recurse=False):
            p.data = p.data.to(torch.float32)
        module.register_forward_hook(lambda mod, args, out: out.to(args[0].dtype) if args else out)
        count += 1
    return count


def upcast_lmhead_output(model) -> bool:
    """Logits in fp32: a hook casts the output of the LM head (or a reward model's score head), and the model is
    marked so that the heads that bypass the module call (llmpipe's label-only head, TRL's fused head in the DPO
    family) project in fp32 themselves (llmpipe.training.lm_head)."""
    import torch

    head = model.get_output_embeddings() or getattr(model, "score", None)
    if head is None:
        return False
    head.register_forward_hook(lambda mod, args, out: out.to(torch.float32))
    model.llmpipe_upcast_lmhead = True
    return True


def apply_mixture_of_depths(model, cfg: Any):
    """mixture_of_depths=convert: insert MoD routers (the MoD package); 'load' is handled while loading."""
    if cfg.model.mixture_of_depths != "convert":
        return model
    try:
        from MoD import apply_mod_to_hf
    except ImportError:
        raise PatchError("model.mixture_of_depths=convert needs the MoD package: pip install 'mixture-of-depth>=1.1.6'")
    return apply_mod_to_hf(model)


def training_patches(model, cfg: Any, log: Callable[[str], None] = print):
    """The options that patch the loaded modules for training."""
    if cfg.model.upcast_layernorm:
        log(f"upcast_layernorm: {upcast_layernorm(model)} norm layers in fp32")
    if cfg.model.upcast_lmhead_output and upcast_lmhead_output(model):
        log("upcast_lmhead_output: logits computed in fp32")
    return model


def param_status(model) -> list[str]:
    """One line per parameter: name, shape, dtype, device, trainable."""
    rows = []
    for name, p in model.named_parameters():
        flag = "trainable" if p.requires_grad else "frozen"
        rows.append(f"{name}  {tuple(p.shape)}  {str(p.dtype).replace('torch.', '')}  {p.device}  {flag}")
    return rows


def count_params(model) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_params": trainable, "all_params": sum(p.numel() for p in model.parameters())}
