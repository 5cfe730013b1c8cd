"""Preference rows with images, for a vision-language model: LLaMA-Factory's pairwise (``chosen``/``rejected``) and
KTO (``kto_tag``) formats with an ``images`` column, for train.stage=dpo and kto.

Per row, like supervised image rows (llmpipe.data.mm_tokenize): every image is opened (a missing or corrupt one
makes the row bad, with the file and the reason), pre-resized by vision.image_max_pixels / image_min_pixels and
measured by the model's image processor; each ``<image>`` of the prompt becomes its family's expansion
(llmpipe.data.mm_plugins; Qwen2-VL: ``<|vision_start|>`` + N x ``<|image_pad|>`` + ``<|vision_end|>``). The rows are then TRL's conversational rows (prompt, chosen/rejected or
completion/label) with that expanded text, plus the images as PNG bytes (column ``images``); TRL tokenizes them,
and llmpipe.training.mm_preference's collator turns the images into pixel values batch by batch.

``data.cutoff_len`` (TRL's max_length) counts the visual tokens. TRL keeps the start of each sequence, so the images
(in the prompt) are never cut, provided the prompt fits: a row whose visual tokens alone exceed cutoff_len, or whose
prompt (visual tokens included) leaves no room for the answer, is a bad row with that reason — TRL would otherwise
drop it silently or cut into its image tokens. Images in an answer are refused (the image belongs to the prompt:
both answers of a pair, and KTO's mismatched KL completions, are scored against the prompt's images).
"""
from __future__ import annotations

from llmpipe.data.media import MediaError, expand_placeholders
from llmpipe.data.mm_tokenize import PLACEHOLDER, ImageTokens


def _images(ex: dict, mm: ImageTokens, root) -> tuple[list[bytes], list[int], list[str]]:
    pngs, counts, texts = [], [], []
    for ref in (ex.get("media") or {}).get("images", []):
        png, n, text = mm.prepare(ref, root)
        pngs.append(png)
        counts.append(n)
        texts.append(text)
    return pngs, counts, texts


def _length(tokenizer, messages: list[dict], prompt: bool = False) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def process_rows(examples: list[dict], tokenizer, mm: ImageTokens, proc: dict, rep, root, kind: str) -> list[dict]:
    """TRL rows (``kind`` pairwise or kto) with expanded image placeholders and PNG ``images``; bad rows to ``rep``."""
    from llmpipe.data import processors as P

    cutoff = proc.get("cutoff_len")
    fn = {"pairwise": P.process_pairwise, "kto": P.process_kto}[kind]
    out = []
    for ex in examples:
        answers = [ex.get("chosen"), ex.get("rejected")] if kind == "pairwise" else [ex["messages"][-1]["content"]]
        if any(PLACEHOLDER in str(a or "") for a in answers):
            rep.bad(ex["_row"], f"an {PLACEHOLDER} placeholder in the answer: images belong to the prompt")
            continue
        try:
            pngs, counts, texts = _images(ex, mm, root)
        except MediaError as e:
            rep.bad(ex["_row"], str(e))
            continue
        n_visual = sum(counts)
        if cutoff and n_visual > cutoff:
            rep.bad(ex["_row"], f"its {n_visual} visual tokens alone exceed cutoff_len={cutoff} (raise "
                                "data.cutoff_len or lower vision.image_max_pixels)")
            continue
        (row,) = fn([{**ex, "messages": expand_placeholders(ex["messages"], PLACEHOLDER, texts)}], **proc)
        if "_bad" in row:   # a tool call its tool format cannot write
            rep.bad(ex["_row"], row["_bad"])
            continue
        if cutoff and _length(tokenizer, row["prompt"], prompt=True) >= cutoff:
            rep.bad(ex["_row"], f"its prompt with {n_visual} visual tokens fills cutoff_len={cutoff}: no answer "
                                "token would be trained (raise data.cutoff_len or lower vision.image_max_pixels)")
            continue
        out.append({**row, "images": pngs})
    return out
