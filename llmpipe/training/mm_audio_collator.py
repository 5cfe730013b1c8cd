"""The batch collator of audio rows (llmpipe.data.mm_audio_rows: input_ids with the expanded audio tokens, labels,
float32 clips in ``audios``) for an audio-language model (Qwen2-Audio layout): padded ids and labels, plus
``input_features`` (the model's WhisperFeatureExtractor, each clip padded to its window) and
``feature_attention_mask`` (the real mel frames, from which the model counts each clip's audio tokens), the clips
in token order."""
from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100


class AudioCollator:
    def __init__(self, tokenizer, mm, label_pad_token_id: int = IGNORE_INDEX):
        from transformers import DataCollatorForSeq2Seq

        self.mm = mm
        self.label_pad_token_id = label_pad_token_id
        self.text = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=label_pad_token_id, padding=True)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        clips = [c for f in features for c in (f.get("audios") or [])]
        batch = self.text([{k: v for k, v in f.items() if k != "audios"} for f in features])
        batch.update(self.mm.batch_inputs(clips))
        return batch
