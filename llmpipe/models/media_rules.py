"""Which video and audio settings can act on which model family, for the pre-flight rules of vision-language
training (llmpipe.models.vision_rules asks here). No torch.

- Videos are read for the Qwen2-VL layout (model_type ``qwen2_vl``, ``model=tiny_vl``): llmpipe.data.mm_video
  decodes, samples and sizes them (vision.video_fps, video_maxlen, video_max_pixels, video_min_pixels).
- ``vision.use_audio_in_video`` would feed a video's audio track to Qwen2.5-Omni's thinker. Its processor
  cannot be built in this environment (it holds a Qwen2-VL video processor, which needs torchvision), and no
  family llmpipe trains reads audio inside a video, so the flag is refused for every model, naming the family.
- ``vision.audio_sampling_rate`` needs a family that reads audio (none of the vision-language families llmpipe
  trains does).
"""
from __future__ import annotations

VIDEO_KEYS = ("video_max_pixels", "video_min_pixels", "video_fps", "video_maxlen")
AUDIO_KEYS = ("audio_sampling_rate",)
MEDIA_KEYS = (*VIDEO_KEYS, *AUDIO_KEYS, "use_audio_in_video")
AUDIO_FAMILIES: tuple[str, ...] = ()
AUDIO_IN_VIDEO = ("Qwen2.5-Omni's thinker reads a video's audio track, and its processor cannot be built here (its "
                  "Qwen2-VL video processor needs torchvision, which this environment cannot install)")


def video_families() -> tuple[str, ...]:
    from llmpipe.data.mm_video import VIDEO_FAMILIES

    return VIDEO_FAMILIES


def why_not(key: str, family: str | None) -> str | None:
    """Why ``vision.<key>`` cannot act on a model of ``family`` (None: it acts)."""
    name = family or "family not known here"
    if key in VIDEO_KEYS and family not in video_families():
        return (f"videos are read for the Qwen2-VL layout only ({', '.join(video_families())}, e.g. model=tiny_vl); "
                f"this model is {name}")
    if key in AUDIO_KEYS and family not in AUDIO_FAMILIES:
        return (f"this model ({name}) reads no audio"
                + (f"; audio is read for {', '.join(AUDIO_FAMILIES)}" if AUDIO_FAMILIES else
                   "; no family llmpipe trains reads audio yet"))
    if key == "use_audio_in_video":
        return f"{AUDIO_IN_VIDEO}; this model is {name}, which reads no audio inside videos"
    return None


def readable_columns(family: str | None, stage: str) -> set[str]:
    """The media columns a model of ``family`` reads at ``stage`` (images are vision_rules' to judge)."""
    out = {"images"}
    if stage == "sft" and family in video_families():
        out.add("videos")
    if stage == "sft" and family in AUDIO_FAMILIES:
        out.add("audios")
    return out
