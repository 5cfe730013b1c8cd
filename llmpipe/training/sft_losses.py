"""SFT token losses other than plain cross-entropy, chosen with train.use_dft_loss / use_asft_loss / use_eaft_loss.

Each is a weighted cross-entropy over the label tokens (the logits at position t predict the label at t + 1),
summed and divided by the label tokens of the whole accumulated batch (the Trainer's ``num_items_in_batch``,
else the batch's own count), like the model's own loss:

- DFT (dynamic fine-tuning): weight = p(label), the token's probability under the model, detached;
- EAFT (entropy-adaptive): weight = (H / 3) ** eaft_alpha, H the entropy of the model's distribution renormalised
  over its 20 most likely tokens, detached;
- ASFT (anchored): the DFT loss plus asft_alpha x KL(reference || model) over the full vocabulary at each label
  position, the reference being the model as training starts (PEFT adapters switched off, or a frozen copy of a
  full/freeze model).

They need the logits at every labelled position, so the label-only LM head (training/lm_head.py) steps aside
when one is on. :func:`loss_trainer_class` gives a Trainer class the loss (``compute_loss_func``) and, for ASFT,
the reference forward.
"""
from __future__ import annotations

import copy
from contextlib import nullcontext
from typing import Any

TOPK = 20            # EAFT: the entropy is taken over the 20 most likely tokens
ENTROPY_SCALE = 3.0  # EAFT: the entropy is divided by 3 before the power


FLAGS = {"dft": "train.use_dft_loss", "asft": "train.use_asft_loss", "eaft": "train.use_eaft_loss"}


def chosen(cfg: Any) -> str | None:
    """'dft', 'asft', 'eaft' or None (plain cross-entropy). Pre-flight refuses more than one."""
    for name, path in FLAGS.items():
        if getattr(cfg.train, path.split(".")[1], False):
            return name
    return None


def token_weights(kind: str, logits, targets, alpha: float = 1.0):
    """The detached per-token weights of ``kind`` for ``logits`` [N, V] (fp32) and their ``targets`` [N]."""
    import torch

    with torch.no_grad():
        if kind in ("dft", "asft"):
            return torch.softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
        if kind == "eaft":
            top = torch.topk(logits, k=min(TOPK, logits.size(-1)), dim=-1).values
            logp = torch.log_softmax(top, dim=-1)
            entropy = -(logp.exp() * logp).sum(-1)
            return (entropy / ENTROPY_SCALE).pow(alpha)
    raise ValueError(f"unknown SFT loss {kind!r}")


def kl_to_reference(logits, ref_logits):
    """Per-token KL(reference || model) over the vocabulary, [N]."""
    import torch

    ref_logp = torch.log_softmax(ref_logits.float(), dim=-1)
    return (ref_logp.exp() * (ref_logp - torch.log_softmax(logits, dim=-1))).sum(-1)


def sft_loss(kind: str, logits, labels, *, alpha: float = 1.0, num_items=None, ref_logits=None):
    """The loss of ``kind`` for causal-LM ``logits`` [B, T, V] and ``labels`` [B, T] (-100 = no label)."""
    import torch

    target = labels[:, 1:].to(logits.device)
    keep = target != -100
    picked = logits[:, :-1][keep].float()
    target = target[keep]
    count = num_items if num_items is not None else keep.sum().clamp(min=1)
    if torch.is_tensor(count):
        count = count.to(picked.device)
    ce = torch.nn.functional.cross_entropy(picked, target, reduction="none")
    total = (ce * token_weights(kind, picked, target, alpha)).sum()
    if kind == "asft":
        total = total + alpha * kl_to_reference(picked, ref_logits[:, :-1][keep]).sum()
    return total / count


class SftLoss:
    """``compute_loss_func`` of the Trainer for the configured loss; ASFT reads ``ref_logits``, set before each
    call by the trainer's reference forward."""

    def __init__(self, kind: str, alpha: float):
        self.kind, self.alpha, self.ref_logits = kind, alpha, None

    def __call__(self, outputs, labels, num_items_in_batch=None):
        ref, self.ref_logits = self.ref_logits, None
        return sft_loss(self.kind, outputs["logits"], labels, alpha=self.alpha, num_items=num_items_in_batch,
                        ref_logits=ref)


def configured_loss(cfg: Any) -> SftLoss | None:
    kind = chosen(cfg)
    if kind is None:
        return None
    alpha = {"dft": 1.0, "asft": cfg.train.asft_alpha, "eaft": cfg.train.eaft_alpha}[kind]
    return SftLoss(kind, alpha)


def describe(loss: SftLoss) -> str:
    return {"dft": "DFT (cross-entropy x p(label))",
            "asft": f"ASFT (DFT + {loss.alpha:g} x KL(reference || model))",
            "eaft": f"EAFT (cross-entropy x (top-{TOPK} entropy / 3) ** {loss.alpha:g})"}[loss.kind]


def frozen_reference(model):
    """The reference for ASFT: None for a PEFT model (its adapters are switched off for the reference forward),
    else a frozen copy of ``model`` as it is now (before training)."""
    if hasattr(model, "disable_adapter"):
        return None
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    return ref.eval()


def loss_trainer_class(base: type, cfg: Any, log=None) -> type:
    """``base`` unchanged when no special SFT loss is configured; else a subclass whose constructor installs the
    loss as ``compute_loss_func`` (announced through ``log``) and, for ASFT, runs the reference model on each batch
    before the policy's forward."""
    loss = configured_loss(cfg)
    if loss is None:
        return base

    class SftLossTrainer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.compute_loss_func = loss
            self.llmpipe_reference = frozen_reference(self.model) if loss.kind == "asft" else None
            if log is not None:
                log(f"SFT loss: {describe(loss)}")

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if loss.kind == "asft" and "labels" in inputs:
                loss.ref_logits = self._reference_logits(model, inputs)
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

        def _reference_logits(self, model, inputs):
            import torch

            ref = self.llmpipe_reference
            if ref is not None and next(ref.parameters()).device != next(model.parameters()).device:
                ref.to(next(model.parameters()).device)
            batch = {k: v for k, v in inputs.items() if k != "labels"}
            unwrapped = self.accelerator.unwrap_model(model)
            switch_off = unwrapped.disable_adapter() if ref is None else nullcontext()
            net = unwrapped if ref is None else ref
            was_training = net.training
            net.eval()   # the reference without dropout
            try:
                with torch.no_grad(), switch_off:
                    return net(**batch).logits.detach()
            finally:
                net.train(was_training)

    SftLossTrainer.__name__ = SftLossTrainer.__qualname__ = base.__name__
    return SftLossTrainer
