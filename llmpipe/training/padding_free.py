"""Padding-free batches (``train.padding_free``): the examples of a batch run as one row, without pad tokens.

A padded batch of B examples costs B x (longest example) tokens of compute; with lengths spread between 28
and 200 tokens a third of that is padding. Padding-free concatenates the examples of the batch into one row
and restarts ``position_ids`` at 0 for each, with no ``attention_mask``: transformers 5 then reads the example
boundaries from the position ids and keeps the examples apart (block-diagonal causal attention for sdpa /
eager / flex, variable-length kernels for FlashAttention), exactly as neat packing does (llmpipe.training.
collators). Every example sees the same tokens at the same positions as in the padded batch and the loss
averages over the same label tokens, so the batches, their order and the losses are those of padded training
(equal up to floating-point summation order); only the pad compute is gone.

Two ways in, one per trainer family:

- causal LM stages (pt/sft without packing): ``PaddingFreeCollator`` builds the single row itself. The first
  label of every example is ignored: in the row it would be predicted from the previous example's last token,
  which a padded batch never does.
- preference stages on TRL's DPOTrainer (``fused_lm_head=True`` calls): TRL pads its batch, so
  ``unpad_model_calls`` hooks the model. Before the forward the padded [N, L] batch becomes one row of its
  real tokens (labels at each example's start ignored); after it, every per-token output is scattered back to
  its [N, L - 1] place, zeros at padding, which is what TRL's fused LM head returns for ignored labels.

Attention: an SDPA model switches to llmpipe.models.varlen_attention (attention per example, as in the padded
batch, not over the whole row); FlashAttention has varlen kernels of its own. ``train.padding_free=null``
(default) turns padding-free on for those, when a check on two rows that share their second example
(``collators.isolation_gap``) shows the examples kept apart, and logs why not otherwise. ``true`` insists
(eager attention too, masked over the row; an error when the check fails); ``false`` keeps padded batches.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmpipe.errors import UserError
from llmpipe.training.collators import (
    IGNORE_INDEX,
    TEXT_COLUMNS,
    NeatPackingCollator,
    isolation_gap,
)

# model options that replace the attention padding-free rows rely on; the isolation check covers the rest
_NO_PADDING_FREE_MODEL_OPTS = (("shift_attn", "S²-Attn (model.shift_attn) groups tokens by position"),
                               ("use_unsloth", "Unsloth (model.use_unsloth) replaces the attention kernels"))


class PaddingFreeError(UserError):
    """train.padding_free=true, but this model lets the examples of one row attend to each other."""


class PaddingFreeCollator:
    """Tokenized causal-LM rows (input_ids / labels) -> one row of all of them with restarting position_ids."""

    def __init__(self, label_pad_token_id: int = IGNORE_INDEX):
        self.label_pad_token_id = label_pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids, labels, pos = [], [], []
        for f in features:
            n = len(f["input_ids"])
            ids.extend(f["input_ids"])
            row_labels = list(f["labels"]) if "labels" in f else list(f["input_ids"])
            labels.extend([IGNORE_INDEX] + row_labels[1:] if n else [])
            pos.extend(range(n))
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([pos]), "use_cache": False}


def blocked_by(cfg) -> str | None:
    """Why the configured model cannot run padding-free batches (None when it may)."""
    for key, why in _NO_PADDING_FREE_MODEL_OPTS:
        if getattr(cfg.model, key, False):
            return why
    return None


def decide(cfg, model, log: Callable[[str], Any] = print) -> bool:
    """Whether this run trains on padding-free batches (train.padding_free: null = when the model allows)."""
    wanted = getattr(cfg.train, "padding_free", None)
    if wanted is False:
        return False
    reason = blocked_by(cfg)
    if reason is None:
        from llmpipe.models.varlen_attention import use_varlen_sdpa

        attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
        if not use_varlen_sdpa(model) and not str(attn).startswith("flash_attention") and not wanted:
            reason = (f"attention implementation {attn!r} would attend over the whole row "
                      "(padding-free runs on sdpa or FlashAttention)")
    if reason is None:
        gap = _gap(model)
        if gap > 1e-4:
            attn = getattr(getattr(model, "config", None), "_attn_implementation", "?")
            reason = (f"this model (attention implementation {attn!r}) lets the examples of one row attend to each "
                      f"other (relative logit change {gap:.2e} when a neighbour changes)")
    if reason is None:
        log("padding-free batches: the examples of each batch run as one row without pad tokens "
            "(train.padding_free=false for padded batches)")
        return True
    if wanted:
        raise PaddingFreeError(f"train.padding_free=true: {reason}; use train.padding_free=null or false")
    log(f"padded batches: {reason}")
    return False


def training_autocast(model):
    """The autocast the Trainer will run ``model`` with, for a check run outside it. Freeze fine-tuning and LLaMA
    Pro with train.bf16/fp16 keep the trainable layers in fp32 beside half-precision frozen ones; run outside
    autocast, such a model fails with a dtype mismatch. A model of one float dtype runs as it is."""
    import contextlib

    import torch

    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    low = [d for d in (torch.bfloat16, torch.float16) if d in dtypes]
    if len(dtypes) > 1 and low:
        return torch.autocast(device_type=next(model.parameters()).device.type, dtype=low[0])
    return contextlib.nullcontext()


def _gap(model) -> float:
    """``isolation_gap`` under the autocast the Trainer will run the model with."""
    with training_autocast(model):
        return isolation_gap(model, NeatPackingCollator(0))


def unpad_reference(ref, log: Callable[[str], Any] = print) -> bool:
    """Padding-free calls for a separate reference model too (full or freeze fine-tuning), on the same terms
    as the policy: variable-length SDPA where it uses SDPA, and only when the isolation check passes."""
    from llmpipe.models.varlen_attention import use_varlen_sdpa

    use_varlen_sdpa(ref)
    gap = _gap(ref)
    if gap > 1e-4:
        log(f"reference model: padded batches (its examples would attend to each other, gap {gap:.2e})")
        return False
    unpad_model_calls(ref, share_prompts=decide_shared(ref, lambda m: log(f"reference model: {m}")))
    return True


def decide_shared(model, log: Callable[[str], Any] = print) -> bool:
    """Whether the padding-free preference calls of ``model`` share prompts (llmpipe.training.shared_prompts):
    variable-length SDPA, and the logits of two pairs equal (1e-4) with and without shared prompts; otherwise
    each answer's row runs its own prompt, and the log says why."""
    from llmpipe.training.shared_prompts import sharing_gap, usable

    if not usable(model, {}):
        return False   # FlashAttention's varlen kernels or masked attention: unshared rows
    try:
        with training_autocast(model):
            gap = sharing_gap(model)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:   # the model cannot run the check's rows
        log(f"prompts not shared: the check on two pairs failed ({type(e).__name__}: {e}); each answer runs its own "
            "prompt")
        return False
    if gap > 1e-4:
        log(f"prompts not shared: this model's logits change by {gap:.2e} (relative) when a pair's answers share "
            "their prompt in one row; each answer runs its own prompt")
        return False
    log("shared prompts: each pair's prompt runs once for both answers (the rejected answer attends to the "
        "chosen answer's prompt)")
    return True


def _unpad(kwargs: dict[str, Any]):
    """The kwargs of one padding-free row for a padded fused-LM-head call, and where its tokens came from."""
    mask = kwargs["attention_mask"].bool()
    where = mask.nonzero(as_tuple=True)           # (rows, cols) of real tokens, row-major = the packed order
    positions = mask.long().cumsum(dim=1) - 1
    starts = positions[where] == 0
    out = dict(kwargs)
    out.pop("attention_mask")
    out["input_ids"] = kwargs["input_ids"][where].unsqueeze(0)
    out["position_ids"] = positions[where].unsqueeze(0)
    if kwargs.get("labels") is not None:
        out["labels"] = kwargs["labels"][where].masked_fill(starts, IGNORE_INDEX).unsqueeze(0)
    return out, where, tuple(mask.shape)


def _repad(value, where, shape):
    """A [1, T - 1] per-token output of the packed row back to the padded batch's [N, L - 1] places."""

    rows, cols = where
    n = value.shape[1]                          # T - 1: entry j scores the packed token j + 1
    keep = cols[:n] < shape[1] - 1
    out = value.new_zeros((shape[0], shape[1] - 1) + tuple(value.shape[2:]))
    return out.index_put((rows[:n][keep], cols[:n][keep]), value[0, :n][keep]) if n else out


# keyword arguments of a text-only fused-LM-head call (anything else, e.g. pixel_values, keeps it padded)
_TEXT_CALL = frozenset({"input_ids", "attention_mask", "labels", "fused_lm_head", "use_cache", "output_router_logits",
                        "num_items_in_batch", "return_dict"})


def unpad_model_calls(model, share_prompts: bool = False) -> Callable[[], None]:
    """Hook ``model`` so that its padded ``fused_lm_head=True`` calls (TRL's DPOTrainer) run padding-free, with
    each pair's prompt run once when ``share_prompts`` (llmpipe.training.shared_prompts); returns the function
    that removes the hooks."""
    import torch

    from llmpipe.training import shared_prompts

    pending: list = []

    def before(module, args, kwargs):
        usable = (not args and kwargs.get("fused_lm_head") and set(kwargs) <= _TEXT_CALL
                  and kwargs.get("attention_mask") is not None and kwargs.get("input_ids") is not None)
        if not usable or kwargs["input_ids"].dim() != 2:
            pending.append(None)
            return None
        shared = shared_prompts.shared_row(kwargs) if share_prompts and shared_prompts.usable(model, kwargs) else None
        if shared is not None:
            new, where = shared
            pending.append((where, tuple(kwargs["input_ids"].shape)))
            return args, new
        new, where, shape = _unpad(kwargs)
        pending.append((where, shape))
        return args, new

    def after(module, args, kwargs, output):
        state = pending.pop() if pending else None
        if state is None:
            return None
        where, shape = state
        for name, value in list(output.items()):
            if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == 1 \
                    and value.shape[1] == where[0].numel() - 1:
                output[name] = _repad(value, where, shape)
        return output

    # first among the pre-hooks: varlen attention's own hook must see the unpadded call (position ids, no mask)
    handles = [model.register_forward_pre_hook(before, with_kwargs=True, prepend=True),
               model.register_forward_hook(after, with_kwargs=True)]
    return lambda: [h.remove() for h in handles]


def causal_collator(cfg, model, dataset, collator, log: Callable[[str], Any] = print):
    """``collator`` or, for plain tokenized rows (no packing, no media) when padding-free applies, a
    ``PaddingFreeCollator``."""
    from llmpipe.training.collators import column_names

    if isinstance(collator, NeatPackingCollator) or not set(column_names(dataset)) <= TEXT_COLUMNS:
        if "images" in column_names(dataset) and getattr(cfg.train, "padding_free", None) is not False:
            log("padded batches: image rows are not run padding-free (each row keeps its own M-RoPE positions)")
        elif "audios" in column_names(dataset) and getattr(cfg.train, "padding_free", None) is not False:
            log("padded batches: audio rows are not run padding-free (each row's clips meet its own audio tokens)")
        if getattr(collator, "mrope_positions", False):   # llmpipe.training.mrope
            log("M-RoPE position ids of image batches: computed by the collator, once per batch, not in every forward")
        return collator
    if not decide(cfg, model, log):
        return collator
    return PaddingFreeCollator(getattr(collator, "label_pad_token_id", IGNORE_INDEX))
