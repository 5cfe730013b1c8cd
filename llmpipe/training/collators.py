"""How tokenized data meets the Trainer: batch collators, the neat-packing isolation check, and the
evaluation on each dataset separately.

Neat packing (``data.neat_packing=true``) stores several examples per row with ``position_ids`` that
restart at 0 for each example (llmpipe.data.packing). ``NeatPackingCollator`` pads those rows and hands
the model ``position_ids`` without an ``attention_mask`` and with ``use_cache=False``: transformers 5
then reads the example boundaries from the position ids and builds attention that cannot cross them —
a block-diagonal causal mask for sdpa / eager / flex attention, variable-length kernels for
FlashAttention. Padding gets its own positions (0, 1, ...), so it is a separate segment nobody attends to.

Measured on transformers 5.23 (tests/integration/test_packing.py): the boundaries are honoured only when
the 2D attention_mask is absent *and* no KV cache is created — a model called in training mode without
gradient checkpointing creates a DynamicCache by default (``use_cache`` from its config), and then the
packed rows silently attend across examples. Hence ``use_cache=False`` in every batch. Because a model
with custom attention code could still ignore the boundaries, ``NeatPackingCheck`` runs the model once at
the start of training on two packed rows that share their second example and raises
``PackingIsolationError`` if that example's logits depend on the first.
"""
from __future__ import annotations

from typing import Any

from llmpipe.errors import UserError

IGNORE_INDEX = -100
# columns of text-only tokenized rows (anything else, e.g. pixel values, belongs to a multimodal collator)
TEXT_COLUMNS = frozenset({"input_ids", "attention_mask", "labels", "position_ids"})


class PackingIsolationError(UserError):
    """The model lets packed examples attend to each other although data.neat_packing asked otherwise."""


class NeatPackingCollator:
    def __init__(self, pad_token_id: int | None, label_pad_token_id: int = IGNORE_INDEX,
                 pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id if pad_token_id is not None else 0
        self.label_pad_token_id = label_pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        n = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            n = -(-n // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids, labels, pos = [], [], []
        for f in features:
            k = n - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * k)
            labels.append(list(f["labels"]) + [self.label_pad_token_id] * k)
            pos.append(list(f["position_ids"]) + list(range(k)))
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "position_ids": torch.tensor(pos), "use_cache": False}


class MultimodalCollator:
    """Image rows (llmpipe.data.mm_tokenize: input_ids with the expanded image tokens, labels, PNG ``images``)
    -> a batch of the model's family (llmpipe.data.mm_plugins): padded ids and labels, ``pixel_values`` of the
    batch's images in token order (the model's own image processor, PIL backend) and the family's extras (Qwen-VL:
    ``image_grid_thw``, ``mm_token_type_ids`` (1 on image tokens) and, for batches of images, the M-RoPE
    ``position_ids`` the model would compute from them (llmpipe.training.mrope); Gemma 3: ``token_type_ids``;
    LLaVA-NeXT: ``image_sizes``). ``mm`` is an ImageTokens or, as
    before the family layer, a Qwen2-VL image processor. Video rows (``videos``: lists of PNG frames,
    llmpipe.data.mm_video) add ``pixel_values_videos`` / ``video_grid_thw``, and type 2 on video tokens."""

    def __init__(self, tokenizer, mm, label_pad_token_id: int = IGNORE_INDEX,
                 image_token: str | None = None, video_token: str = "<|video_pad|>"):
        from transformers import DataCollatorForSeq2Seq

        from llmpipe.data.mm_plugins import ImageTokens

        self.mm = mm if isinstance(mm, ImageTokens) else ImageTokens(mm)
        self.image_processor = self.mm.image_processor
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token or self.mm.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(video_token)
        self.text = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=label_pad_token_id, padding=True)
        self.tokenizer = tokenizer
        from llmpipe.training.mrope import FAMILIES

        self.merge = int(getattr(self.image_processor, "merge_size", 0) or 0)
        # M-RoPE position ids of image batches computed here (llmpipe.training.mrope)
        self.mrope_positions = self.mm.family in FAMILIES and self.merge > 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        from llmpipe.data.mm_media import from_png

        images = [from_png(b) for f in features for b in (f.get("images") or [])]
        batch = self.text([{k: v for k, v in f.items() if k not in ("images", "videos", "video_sampled_fps")}
                           for f in features])
        batch.update(self.mm.batch_inputs(images, batch["input_ids"], self.image_token_id))
        if any(f.get("videos") for f in features):   # frames sampled by llmpipe.data.mm_video: the family's inputs
            from llmpipe.data.mm_video import batch_inputs

            batch_inputs(self.mm, self.tokenizer, features, batch)
        elif self.mrope_positions and "image_grid_thw" in batch:   # Qwen-VL: once here, not in every forward
            from llmpipe.training.mrope import image_positions

            batch["position_ids"] = image_positions(batch["input_ids"], batch["mm_token_type_ids"],
                                                    batch["image_grid_thw"], self.merge, batch.get("attention_mask"))
        return batch


def column_names(dataset) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names:
        return list(names)
    return list(getattr(dataset, "features", None) or {})


def collator_for(cfg, tokenizer, dataset):
    """The collator for tokenized causal-LM rows: image rows get MultimodalCollator, neat-packed rows (they carry
    position_ids) NeatPackingCollator, everything else transformers' DataCollatorForSeq2Seq (dynamic padding)."""
    label_pad = IGNORE_INDEX if cfg.data.ignore_pad_token_for_loss else tokenizer.pad_token_id
    if "audios" in column_names(dataset):   # an audio-language model's rows (llmpipe.data.mm_audio_rows)
        from llmpipe.data import mm_audio
        from llmpipe.training.mm_audio_collator import AudioCollator

        return AudioCollator(tokenizer, mm_audio.load(tokenizer.name_or_path), label_pad)
    if "images" in column_names(dataset):   # a vision-language model's rows: its processor sits next to the tokenizer
        from llmpipe.data import mm_plugins

        return MultimodalCollator(tokenizer, mm_plugins.load(tokenizer.name_or_path), label_pad)
    if "position_ids" in column_names(dataset):
        return NeatPackingCollator(tokenizer.pad_token_id, label_pad)
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=label_pad, padding=True)


def isolation_gap(model, collator: NeatPackingCollator, length: int = 12, seed: int = 0) -> float:
    """Largest change of the second example's logits when the first example of its row is replaced
    (0 when packed examples are isolated), relative to the logits' magnitude."""
    import torch

    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or model.get_input_embeddings().num_embeddings
    g = torch.Generator().manual_seed(seed)
    a, c, b = (torch.randint(0, vocab, (length,), generator=g).tolist() for _ in range(3))
    rows = [{"input_ids": first + b, "labels": first + b, "position_ids": list(range(length)) * 2}
            for first in (a, c)]
    batch = collator(rows)
    device = next(model.parameters()).device
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    batch.pop("labels")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(**batch).logits.float()
    finally:
        model.train(was_training)
    second = logits[:, length:]
    return ((second[0] - second[1]).abs().max() / second.abs().max().clamp_min(1e-6)).item()


def packing_callbacks(collator) -> list:
    """Callbacks the Trainer needs for ``collator`` (the isolation check for neat packing)."""
    if not isinstance(collator, NeatPackingCollator):
        return []
    from transformers import TrainerCallback

    class NeatPackingCheck(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            gap = isolation_gap(model, collator)
            if gap > 1e-4:
                attn = getattr(getattr(model, "config", None), "_attn_implementation", "?")
                raise PackingIsolationError(
                    f"data.neat_packing: this model (attention implementation {attn!r}) lets packed examples "
                    f"attend to each other (relative logit change {gap:.2e} when a neighbour changes); use "
                    "model.flash_attn=sdpa or disabled (eager), or data.neat_packing=false")

    return [NeatPackingCheck()]


def evaluate_each(trainer, load_dir, log=print) -> dict:
    """``data.eval_on_each_dataset``: the final loss on every evaluation dataset on its own
    (``eval_<name>_loss``), next to ``eval_loss`` on all of them together."""
    from pathlib import Path

    from llmpipe.data.published import open_eval_each

    each = open_eval_each(Path(load_dir)) or {}
    out = {}
    for name, ds in each.items():
        m = trainer.evaluate(eval_dataset=ds, metric_key_prefix=f"eval_{name}")
        out.update({k: v for k, v in m.items() if k.endswith("_loss") and isinstance(v, (int, float))})
        log(f"held-out loss on {name}: {m[f'eval_{name}_loss']:.4f}")
    return out
