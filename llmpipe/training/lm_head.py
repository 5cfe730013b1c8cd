"""Label-only LM head for pt/sft: the vocabulary projection runs only where a token is predicted for the loss.

A causal LM's forward projects every position onto the vocabulary (hidden x vocab per token, about a fifth of
the bench model's FLOPs) and keeps the full [batch, length, vocab] logits for the loss, although in SFT only
the response tokens (about a third) have labels. ``add_label_only_head`` gives the model a second way to
compute its loss: ``model(..., labels=..., label_only_head=True)`` runs the backbone, projects the hidden
states of the labelled positions only (a plain matmul, so autograd keeps those few logits instead of
recomputing them as TRL's chunked head does: measured 15 % of a packed SFT step with TRL's head) and returns
the loss the model's own forward defines: cross-entropy summed over the label tokens, divided by
``num_items_in_batch`` (the Trainer's count) or their number. ``LabelOnlyBatches`` adds the flag to each
training and evaluation batch; generation never sees it.

Only for plain heads: models whose logits are scaled or soft-capped (Gemma 2, Cohere, Granite, ...) or whose loss
adds an MoE router term keep their own forward, as do runs that need the logits (``train.compute_accuracy``) and
runs that bring their own head kernels (Liger, Unsloth). Image rows use it too when the model's backbone
(``model.base_model``: the vision tower, the projector and the language model of every image family llmpipe has,
which the ``*ForConditionalGeneration`` forward runs before its LM head) names ``pixel_values`` in its forward: the
family's extras (M-RoPE grids and token types, Gemma 3's token types, image sizes, pixel masks) go to the backbone
as they would from the full forward (the losses of the eight image families' tiny models agree to 1e-6, bench/
findings_vlm.md). Video and audio rows keep the model's own forward (not verified for videos; audio models run
their encoder outside the backbone).

DPO-family stages keep TRL's fused LM head (it also yields the per-token entropy and accuracy TRL logs);
``score_label_positions_only`` makes it skip the unlabelled positions on the CPU as well.

``model.upcast_lmhead_output`` reaches every head: the module hook (llmpipe.models.patches) for the model's own
forward, an fp32 projection in the label-only head, and TRL's ``cast_lm_head_to_fp32`` for its fused head
(``fused_head_in_fp32``, around the construction of a DPO/KTO trainer).
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

# media columns of tokenized rows -> the forward input the model's backbone must name to take them
MEDIA_INPUTS = {"images": "pixel_values"}
# config attributes that change the logits or the loss beyond lm_head + cross-entropy
_NOT_PLAIN = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling",
              "output_router_logits")


class LabelOnlyBatches:
    """A collator whose batches ask the model for its label-only loss."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.collator(features), "label_only_head": True}

    def __getattr__(self, name):   # the wrapped collator's attributes (pad ids, ...) for whoever reads them
        if name.startswith("__") or name == "collator":   # unpickling (dataloader workers) before __init__
            raise AttributeError(name)
        return getattr(self.collator, name)


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def blocked_by(cfg, model, columns=None) -> str | None:
    from llmpipe.training.collators import TEXT_COLUMNS

    media = set(columns or ()) - TEXT_COLUMNS
    if media - set(MEDIA_INPUTS):
        return "the rows carry more than text (" + ", ".join(sorted(media)) + ")"
    if getattr(cfg.train, "compute_accuracy", False):
        return "train.compute_accuracy needs the logits"
    if getattr(cfg.train, "label_smoothing_factor", None):
        return "train.label_smoothing_factor smooths the loss over the logits"
    from llmpipe.training.sft_losses import FLAGS, chosen

    if chosen(cfg):
        return f"{FLAGS[chosen(cfg)]} weights each token by its logits"
    for key in ("enable_liger_kernel", "use_unsloth"):
        if getattr(cfg.model, key, False):
            return f"model.{key} brings its own LM head kernels"
    base = _base(model)
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    special = [a for a in _NOT_PLAIN if getattr(config, a, None) not in (None, False, 1, 1.0)]
    if special:
        return f"the model's head is not a plain projection ({', '.join(special)})"
    if base.get_output_embeddings() is None or getattr(base, "base_model", base) is base:
        return "the model has no separate LM head"
    takes = _backbone_inputs(base)
    missing = sorted({MEDIA_INPUTS[c] for c in media if MEDIA_INPUTS[c] not in takes})
    if missing:
        return (f"the rows carry more than text ({', '.join(sorted(media))}) and the model's backbone does not take "
                f"{', '.join(missing)}")
    return None


def _backbone_inputs(base) -> frozenset:
    """The parameter names of the forward that the label-only head runs (``base.base_model``)."""
    import inspect

    try:
        return frozenset(inspect.signature(base.base_model.forward).parameters)
    except (TypeError, ValueError):
        return frozenset()


def add_label_only_head(model) -> None:
    """Give ``model`` (not a PEFT wrapper) the ``label_only_head=True`` forward; idempotent."""
    import functools
    import types

    import torch
    from transformers.modeling_outputs import CausalLMOutputWithPast

    if getattr(model, "llmpipe_label_only_head", False):
        return
    original = model.forward

    @functools.wraps(type(model).forward)   # the signature tells the Trainer that the loss takes num_items_in_batch
    def forward(self, *args, label_only_head=False, **kwargs):
        if not label_only_head:
            return original(*args, **kwargs)
        labels = kwargs.pop("labels")
        items = kwargs.pop("num_items_in_batch", None)
        kwargs.pop("logits_to_keep", None)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        target = labels[:, 1:].to(hidden.device)
        keep = target != -100
        head = self.get_output_embeddings()
        if getattr(self, "llmpipe_upcast_lmhead", False):   # model.upcast_lmhead_output: the projection in fp32
            logits = torch.nn.functional.linear(hidden[keep].float(), head.weight.float(),
                                                None if head.bias is None else head.bias.float())
        else:
            logits = head(hidden[keep]).float()
        loss = torch.nn.functional.cross_entropy(logits, target[keep], reduction="sum")
        return CausalLMOutputWithPast(loss=loss / (items if items is not None else keep.sum().clamp(min=1)))

    model.forward = types.MethodType(forward, model)
    model.llmpipe_label_only_head = True


def label_only_head(cfg, model, collator, log: Callable[[str], Any] = print, columns=None):
    """``collator`` wrapped in ``LabelOnlyBatches`` after giving ``model`` the label-only loss, or ``collator``
    unchanged when the head must stay as it is (``columns``: the training rows' columns, when known)."""
    reason = blocked_by(cfg, model, columns)
    if reason is not None:
        log(f"LM head over every position: {reason}")
        return collator
    add_label_only_head(_base(model))
    media = sorted(c[:-1] for c in MEDIA_INPUTS if c in set(columns or ()))
    if media:
        log(f"label-only LM head: the vocabulary projection runs on the labelled positions only, {' and '.join(media)} "
            "rows too (the model's backbone runs the vision tower and the language model, as its own forward does)")
    return LabelOnlyBatches(collator)


def score_label_positions_only() -> None:
    """TRL's fused LM head (DPO family) projects only the positions that have a label (the completions) on
    Triton devices, and every position elsewhere, to keep tile shapes fixed for compiled backends such as
    Neuron. On the CPU nothing is compiled, so the prompt and pad positions are pure waste: measured on the
    bench model, a DPO forward + backward went from 0.49 to 0.39 s with bit-identical log-probabilities.
    Makes the CPU take the compact path too (TRL 1.16's ``_use_triton`` as read by its fused head only)."""
    import trl.trainer.utils as trl_utils

    current = getattr(trl_utils, "_use_triton", None)
    if current is None or getattr(current, "llmpipe_cpu_compact", False):
        return

    def compact_on_cpu(device, _triton=current):
        return getattr(device, "type", None) == "cpu" or _triton(device)

    compact_on_cpu.llmpipe_cpu_compact = True
    trl_utils._use_triton = compact_on_cpu


@contextmanager
def trl_fused_head(cfg):
    """While a TRL DPO/KTO trainer is built (the train stage's, and the reference stage's scoring one): its fused LM
    head as this run configures it (:func:`fused_head_in_fp32`), computing on the CPU with
    llmpipe.training.cpu_logprobs (the same outputs in fewer passes)."""
    from llmpipe.training.cpu_logprobs import use_on_cpu

    use_on_cpu()
    with fused_head_in_fp32(bool(cfg.model.upcast_lmhead_output)):
        yield


@contextmanager
def fused_head_in_fp32(enabled: bool):
    """While a TRL DPO/KTO trainer is built: its fused LM head gets ``cast_lm_head_to_fp32=True`` (the projection in
    fp32, outside autocast) when ``enabled`` (model.upcast_lmhead_output). TRL 1.16 builds the head inside the
    trainer's constructor without exposing the option, so the constructor's reference to it is swapped for the
    duration of the call."""
    if not enabled:
        yield
        return
    import functools

    import trl.trainer.dpo_trainer as dpo
    import trl.trainer.kto_trainer as kto

    saved = {m: m.add_fused_lm_head for m in (dpo, kto)}
    try:
        for module, original in saved.items():
            module.add_fused_lm_head = functools.partial(original, cast_lm_head_to_fp32=True)
        yield
    finally:
        for module, original in saved.items():
            module.add_fused_lm_head = original
