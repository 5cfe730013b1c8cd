"""Tokenizing image rows for a vision-language model (supervised fine-tuning).

Per row: every image is opened (llmpipe.data.mm_media; a missing or corrupt one makes the row bad, with the file
and the reason), pre-resized by vision.image_max_pixels / image_min_pixels, and measured by the model's image
processor, and each ``<image>`` placeholder, in order over the conversation, is replaced by its family's expansion
(llmpipe.data.mm_plugins: for Qwen2-VL ``<|vision_start|>`` + ``<|image_pad|>`` x grid/merge_size**2 +
``<|vision_end|>``), and the conversation is then tokenized like any supervised row
(llmpipe.data.processors.encode_supervised), so ``cutoff_len`` counts the visual tokens. A row whose visual
tokens alone exceed cutoff_len, or whose truncation would cut into an image, is a bad row with that reason.
Image tokens never carry a label. The images are kept in the row as PNG bytes (column ``images``); the
multimodal collator (llmpipe.training.collators) turns them into pixel values batch by batch.
"""
from __future__ import annotations

from llmpipe.data.media import MediaError, expand_placeholders
from llmpipe.data.mm_plugins import ImageTokens
from llmpipe.data.processors import IGNORE_INDEX, encode_supervised

__all__ = ["PLACEHOLDER", "ImageTokens", "tokenize_examples"]
PLACEHOLDER = "<image>"


def tokenize_examples(examples: list[dict], tokenizer, mm: ImageTokens, proc: dict, rep, root):
    """``datasets.Dataset`` (input_ids, labels, attention_mask, images) of sft examples; bad rows go to ``rep``."""
    image_id = tokenizer.convert_tokens_to_ids(mm.image_token)
    cutoff = proc.get("cutoff_len")
    ready, meta = [], []
    for ex in examples:
        refs = (ex.get("media") or {}).get("images", [])
        pngs, texts, counts = [], [], []
        try:
            for ref in refs:
                png, n, text = mm.prepare(ref, root)
                pngs.append(png)
                texts.append(text)
                counts.append(n)
        except MediaError as e:
            rep.bad(ex["_row"], str(e))
            continue
        if cutoff and sum(counts) > cutoff:
            rep.bad(ex["_row"], f"its {sum(counts)} visual tokens alone exceed cutoff_len={cutoff} (raise "
                                "data.cutoff_len or lower vision.image_max_pixels)")
            continue
        ready.append({**ex, "messages": expand_placeholders(ex["messages"], PLACEHOLDER, texts)})
        meta.append((ex["_row"], pngs, sum(counts)))
    rows = encode_rows(ready, meta, tokenizer, proc, rep, image_id, "images", "image",
                       " or lower vision.image_max_pixels")
    return rows_dataset(rows, "images")


def encode_rows(ready: list[dict], meta: list[tuple], tokenizer, proc: dict, rep, token_id: int, column: str,
                what: str, hint: str = "") -> list[dict]:
    """The expanded examples ``ready`` tokenized like any supervised row (``meta``: per example its row, its media
    and its media tokens): a bad row when truncation would cut into its ``what`` tokens (``hint``: what else to
    change) or leaves nothing to train; the media tokens (``token_id``) get no label; the media go to ``column``.
    Shared by image rows and audio rows (llmpipe.data.mm_audio_rows)."""
    cutoff = proc.get("cutoff_len")
    opts = {k: proc[k] for k in ("cutoff_len", "train_on_prompt", "mask_history", "default_system", "tool_format")
            if k in proc}
    rows = []
    for (row, media, n_media), enc in zip(meta, encode_supervised(ready, tokenizer, **opts) if ready else []):
        if isinstance(enc, str):
            rep.bad(row, enc)
            continue
        ids, labels, notes = enc
        kept = sum(1 for t in ids if t == token_id)
        if kept != n_media:
            rep.bad(row, f"cutoff_len={cutoff} would cut into its {what} tokens ({kept} of {n_media} kept); raise "
                         f"data.cutoff_len{hint}")
            continue
        labels = [IGNORE_INDEX if t == token_id else lab for t, lab in zip(ids, labels)]
        if all(lab == IGNORE_INDEX for lab in labels):
            rep.bad(row, f"no trainable token left within cutoff_len={cutoff}")
            continue
        rep.notes.update(notes)
        rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids), column: media})
    return rows


def rows_dataset(rows: list[dict], column: str):
    """``datasets.Dataset`` of tokenized media rows (the media as a list of bytes in ``column``)."""
    import datasets

    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                                  "labels": datasets.Sequence(datasets.Value("int64")),
                                  "attention_mask": datasets.Sequence(datasets.Value("int8")),
                                  column: datasets.Sequence(datasets.Value("binary"))})
    return datasets.Dataset.from_list(rows, features=features)
