"""Label-only LM head for pt/sft: the vocabulary projection runs only where a token is predicted for the loss.

A causal LM's forward projects every position onto the vocabulary (hidden x vocab per token, about a fifth of
the bench model's FLOPs) and keeps the full [batch, length, vocab] logits for the loss, although in SFT only
the response tokens (about a third) have labels. TRL's fused LM head (``trl.trainer.utils.add_fused_lm_head``)
computes the same next-token log-likelihood from the hidden states of the labelled positions only, in chunks,
without materialising the logits; ``model(..., labels=..., fused_lm_head=True)`` then returns the loss as the
model's own forward defines it (summed negative log-likelihood over the label tokens, divided by
``num_items_in_batch`` or their count). llmpipe uses it for training batches: ``FusedHeadBatches`` adds
``fused_lm_head=True`` to each batch of the collator.

It stays off where the logits are needed or another kernel owns the head: ``train.compute_accuracy`` (token
accuracy from the logits), Liger (its own fused cross-entropy), Unsloth, and models without an output
embedding. Generation is unaffected (the flag is only in training and evaluation batches). On the CPU the
compact path that skips unlabelled positions is enabled by ``pref_common.score_label_positions_only``.
"""
from __future__ import annotations

from typing import Any, Callable


class FusedHeadBatches:
    """A collator whose batches ask the model for its fused (label-only) LM head."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.collator(features), "fused_lm_head": True}

    def __getattr__(self, name):   # the wrapped collator's attributes (pad ids, ...) for whoever reads them
        if name.startswith("__") or name == "collator":   # unpickling (dataloader workers) before __init__
            raise AttributeError(name)
        return getattr(self.collator, name)


def blocked_by(cfg, model) -> str | None:
    if getattr(cfg.train, "compute_accuracy", False):
        return "train.compute_accuracy needs the logits"
    for key in ("enable_liger_kernel", "use_unsloth"):
        if getattr(cfg.model, key, False):
            return f"model.{key} brings its own LM head kernels"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if base.get_output_embeddings() is None or not hasattr(base, "base_model"):
        return "the model has no separate LM head"
    return None


def label_only_head(cfg, model, collator, log: Callable[[str], Any] = print):
    """``collator`` wrapped in ``FusedHeadBatches`` after patching ``model`` with TRL's fused LM head, or
    ``collator`` unchanged when the head must stay as it is."""
    reason = blocked_by(cfg, model)
    if reason is not None:
        log(f"LM head over every position: {reason}")
        return collator
    from trl.trainer.utils import add_fused_lm_head

    from llmpipe.training.pref_common import score_label_positions_only

    score_label_positions_only()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "llmpipe_fused_head", False):
        add_fused_lm_head(base)
        base.llmpipe_fused_head = True
    return FusedHeadBatches(collator)
