"""Selective gradient checkpointing (``model.gradient_checkpointing``): recompute only the attention or only the
MLP block of every decoder layer in the backward pass, instead of the whole layer.

``full`` (the default) is transformers' own layer-level checkpointing (``activation_checkpointing`` in the
TrainingArguments, ``model.use_reentrant_gc``): the least memory, every layer's forward run twice.
``attention``: each layer's ``self_attn`` runs under ``torch.utils.checkpoint`` (non-reentrant) and the MLP keeps
its activations — the attention's inner activations (projections, scores) are recomputed, the MLP's (the
widest, ``intermediate_size``) are kept: more memory, less recompute. ``mlp``: the reverse — the MLP's wide
activations are dropped and recomputed, the attention's kept. transformers' layer-level checkpointing is then
off. ``model.disable_gradient_checkpointing=true`` turns all of it off.

Only in training with gradients: a ``torch.no_grad()`` call (a reference forward, evaluation) runs the module
plainly, so nothing changes outside the backward pass; the losses and gradients are those of the model without
checkpointing (the recomputation is the same forward).
"""
from __future__ import annotations

from typing import Any

MODES = ("full", "attention", "mlp")
_PART = {"attention": "self_attn", "mlp": "mlp"}


def layer_parts(model, mode: str) -> list:
    """The sub-modules of ``mode`` (``self_attn`` or ``mlp``) of every decoder layer of ``model``."""
    name = _PART[mode]
    found = []
    for module in model.modules():
        part = getattr(module, name, None)
        # a decoder layer holds both blocks; the model and its wrappers hold neither directly
        if part is not None and hasattr(module, "self_attn") and hasattr(module, "mlp"):
            found.append(part)
    return found


def _checkpointed(module) -> None:
    import torch
    from torch.utils.checkpoint import checkpoint

    plain = module.forward

    def forward(*args, **kwargs):
        if module.training and torch.is_grad_enabled():
            return checkpoint(plain, *args, use_reentrant=False, **kwargs)
        return plain(*args, **kwargs)

    module.forward = forward
    module._llmpipe_checkpointed = True


def apply(model, cfg: Any, log=print) -> int:
    """Checkpoint the attention or MLP block of every layer per ``model.gradient_checkpointing``; the number of
    blocks wrapped (0 for ``full`` or with checkpointing disabled)."""
    mode = getattr(cfg.model, "gradient_checkpointing", "full")
    if cfg.model.disable_gradient_checkpointing or mode == "full":
        return 0
    parts = [p for p in layer_parts(model, mode) if not getattr(p, "_llmpipe_checkpointed", False)]
    if not parts:
        from llmpipe.errors import UserError

        raise UserError(f"model.gradient_checkpointing={mode}: this model has no decoder layers with "
                        f"'{_PART[mode]}' blocks; use model.gradient_checkpointing=full")
    for part in parts:
        _checkpointed(part)
    log(f"selective gradient checkpointing: the {mode} block of {len(parts)} layer(s) is recomputed in the "
        "backward pass, the rest keeps its activations")
    return len(parts)
