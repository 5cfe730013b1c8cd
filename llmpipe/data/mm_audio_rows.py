"""Tokenizing audio rows for an audio-language model (Qwen2-Audio layout; supervised fine-tuning).

Per row: every clip of the ``audios`` column is decoded (llmpipe.data.mm_audio: a path under ``data.media_dir``,
a ``{"path"}`` / ``{"bytes"}`` dict, raw bytes or a base64 ``data:`` URL; a missing or corrupt file makes the row
bad, with the file and the reason), resampled to ``vision.audio_sampling_rate`` and cut to the feature extractor's
window; each ``<audio>`` placeholder, in order over the conversation, becomes ``<|audio_bos|>`` + ``<|AUDIO|>`` x n
+ ``<|audio_eos|>`` (n from the clip's real mel frames), and the conversation is then tokenized like any supervised
row (llmpipe.data.processors.encode_supervised), so ``cutoff_len`` counts the audio tokens. A row whose audio
tokens alone exceed cutoff_len, or whose truncation would cut into a clip, is a bad row with that reason. Audio
tokens never carry a label. The clips are kept in the row (column ``audios``) as float32 samples; the audio
collator (llmpipe.training.mm_audio_collator) turns them into ``input_features`` batch by batch.
"""
from __future__ import annotations

from llmpipe.data.media import MediaError
from llmpipe.data.mm_tokenize import encode_rows, rows_dataset


def _prepared(ex: dict, mm, root) -> tuple[list[bytes], list[int]]:
    clips, counts = [], []
    for ref in (ex.get("media") or {}).get("audios", []):
        clip, n = mm.prepare(ref, root)
        clips.append(clip)
        counts.append(n)
    return clips, counts


def tokenize_examples(examples: list[dict], tokenizer, mm, proc: dict, rep, root):
    """``datasets.Dataset`` (input_ids, labels, attention_mask, audios) of sft examples; bad rows go to ``rep``.
    Qwen2.5-Omni's thinker (images and videos too): llmpipe.data.mm_omni."""
    from llmpipe.data import mm_omni

    if isinstance(mm, mm_omni.OmniTokens):
        return mm_omni.tokenize_examples(examples, tokenizer, mm, proc, rep, root)
    audio_id = tokenizer.convert_tokens_to_ids(mm.audio_token)
    cutoff = proc.get("cutoff_len")
    ready, meta = [], []
    for ex in examples:
        try:
            clips, counts = _prepared(ex, mm, root)
        except MediaError as e:
            rep.bad(ex["_row"], str(e))
            continue
        if cutoff and sum(counts) > cutoff:
            rep.bad(ex["_row"], f"its {sum(counts)} audio tokens alone exceed cutoff_len={cutoff} (raise "
                                "data.cutoff_len or use shorter clips)")
            continue
        ready.append({**ex, "messages": mm.expand(ex["messages"], counts)})
        meta.append((ex["_row"], clips, sum(counts)))
    return rows_dataset(encode_rows(ready, meta, tokenizer, proc, rep, audio_id, "audios", "audio"), "audios")
