"""Which video and audio settings can act on which model family, for the pre-flight rules of vision-language
training (llmpipe.models.vision_rules asks here). No torch.

- Videos are read for the families of llmpipe.data.mm_video_layouts (qwen2_vl, qwen2_5_vl, qwen3_vl,
  llava_next_video, qwen2_5_omni_thinker): llmpipe.data.mm_video decodes, samples and sizes them (vision.video_fps,
  video_maxlen, video_max_pixels, video_min_pixels).
- ``vision.use_audio_in_video`` feeds a video's audio track to Qwen2.5-Omni's thinker (llmpipe.data.mm_omni), the
  only family that reads audio inside a video; it is refused for every other model, naming the family.
- ``vision.audio_sampling_rate`` needs a family that reads audio (Qwen2-Audio, ``model=tiny_qwen2_audio``;
  Qwen2.5-Omni's thinker, ``model=tiny_qwen2_5_omni``), and a rate at which its feature extractor keeps the
  encoder's window of mel frames; ``image_*_pixels`` mean nothing for Qwen2-Audio, which reads no images. Audio
  models train with sft, text rows with pt (AUDIO_REFUSED says why not the other stages).
"""
from __future__ import annotations

VIDEO_KEYS = ("video_max_pixels", "video_min_pixels", "video_fps", "video_maxlen")
AUDIO_KEYS = ("audio_sampling_rate",)
IMAGE_KEYS = ("image_max_pixels", "image_min_pixels")   # an audio-language model reads no images
MEDIA_KEYS = (*VIDEO_KEYS, *AUDIO_KEYS, "use_audio_in_video", *IMAGE_KEYS)
AUDIO_ONLY: tuple[str, ...] = ("qwen2_audio",)   # llmpipe.models.audio, llmpipe.data.mm_audio: no images
OMNI_FAMILIES: tuple[str, ...] = ("qwen2_5_omni_thinker",)   # llmpipe.data.mm_omni: images, videos, audio
AUDIO_FAMILIES: tuple[str, ...] = (*AUDIO_ONLY, *OMNI_FAMILIES)
AUDIO_STAGES = ("sft", "pt")
AUDIO_REFUSED = ("llmpipe's preference path (llmpipe.training.mm_preference) passes image pixels to TRL's trainers, "
                 "not audio features, and rm and ppo have no media path: the audio would be dropped or the run would "
                 "stop mid-way (pt trains on text rows)")
AUDIO_IN_VIDEO = ("only Qwen2.5-Omni's thinker (qwen2_5_omni_thinker, e.g. model=tiny_qwen2_5_omni) reads a "
                  "video's audio track")


def video_families() -> tuple[str, ...]:
    from llmpipe.data.mm_video_layouts import LAYOUTS

    return LAYOUTS


def why_not(key: str, family: str | None) -> str | None:
    """Why ``vision.<key>`` cannot act on a model of ``family`` (None: it acts)."""
    name = family or "family not known here"
    if key in VIDEO_KEYS and family not in video_families():
        return (f"this model ({name}) reads no videos; videos are read for {', '.join(video_families())} "
                "(e.g. model=tiny_vl)")
    if key in AUDIO_KEYS and family not in AUDIO_FAMILIES:
        return (f"this model ({name}) reads no audio"
                + (f"; audio is read for {', '.join(AUDIO_FAMILIES)}" if AUDIO_FAMILIES else
                   "; no family llmpipe trains reads audio yet"))
    if key == "use_audio_in_video" and family not in OMNI_FAMILIES:
        return f"{AUDIO_IN_VIDEO}; this model ({name}) reads no audio inside videos"
    if key in IMAGE_KEYS and family in AUDIO_ONLY:
        return f"this model ({name}) is an audio-language model and reads no images"
    return None


def audio_rate_problem(ref: str, rate: int) -> str | None:
    """Why audio at ``rate`` Hz cannot feed model ``ref``'s feature extractor (its window must keep its mel frames:
    llmpipe.data.mm_audio.rate_settings), or None (also when the extractor is not known here). No torch."""
    import json
    from pathlib import Path

    from llmpipe.data.mm_audio import rate_settings
    from llmpipe.models import audio_builtin

    if ref == audio_builtin.NAME:
        fe = {"sampling_rate": audio_builtin.SPEC["sampling_rate"], "hop_length": 160, "n_fft": 400,
              "chunk_length": audio_builtin.SPEC["window_s"]}
    elif ref == "builtin:tiny-qwen2-5-omni":
        from llmpipe.data.mm_omni import FEATURES

        fe = FEATURES
    else:
        fe = None
        for name in ("processor_config.json", "preprocessor_config.json"):
            try:
                data = json.loads((Path(ref).expanduser() / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            fe = data.get("feature_extractor", data) if isinstance(data, dict) else None
            if fe and "hop_length" in fe:
                break
        if not fe or not all(k in fe for k in ("sampling_rate", "hop_length", "n_fft", "chunk_length")):
            return None
    if rate_settings(fe, int(rate)) is None:
        return (f"the feature extractor's {fe['chunk_length']} s window would not keep its "
                f"{int(fe['chunk_length']) * int(fe['sampling_rate']) // int(fe['hop_length'])} mel frames "
                f"(a hop of {int(fe['hop_length'])} samples at {fe['sampling_rate']} Hz) at {rate} Hz")
    return None


def readable_columns(family: str | None, stage: str) -> set[str]:
    """The media columns a model of ``family`` reads at ``stage`` (images are vision_rules' to judge)."""
    out = set() if family in AUDIO_ONLY else {"images"}
    if stage == "sft" and family in video_families():
        out.add("videos")
    if stage == "sft" and family in AUDIO_FAMILIES:
        out.add("audios")
    return out
