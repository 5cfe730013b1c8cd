"""The batch collator of audio rows (llmpipe.data.mm_audio_rows: input_ids with the expanded audio tokens, labels,
float32 clips in ``audios``) for an audio-language model (Qwen2-Audio layout): padded ids and labels, plus
``input_features`` (the model's WhisperFeatureExtractor, each clip padded to its window) and
``feature_attention_mask`` (the real mel frames, from which the model counts each clip's audio tokens), the clips
in token order. Qwen2.5-Omni's thinker (llmpipe.data.mm_omni.OmniTokens) adds its rows' images and videos."""
from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100
MEDIA = ("audios", "images", "videos", "video_sampled_fps")   # columns that are not the text collator's


class AudioCollator:
    def __init__(self, tokenizer, mm, label_pad_token_id: int = IGNORE_INDEX):
        from transformers import DataCollatorForSeq2Seq

        if mm is None:   # not Qwen2-Audio's: Qwen2.5-Omni's thinker (its images and videos too)
            from llmpipe.data.mm_omni import load_published

            mm = load_published(tokenizer.name_or_path)
        self.mm = mm
        self.label_pad_token_id = label_pad_token_id
        self.text = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=label_pad_token_id, padding=True)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        clips = [c for f in features for c in (f.get("audios") or [])]
        batch = self.text([{k: v for k, v in f.items() if k not in MEDIA} for f in features])
        batch.update(self.mm.batch_inputs(clips))
        others = getattr(self.mm, "other_inputs", None)   # Qwen2.5-Omni: images, videos, use_audio_in_video
        if others is not None:
            batch.update(others(features, batch, self.text.tokenizer))
        return batch
