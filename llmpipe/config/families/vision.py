"""Vision family (``vision.*``): image/video/audio preprocessing and what to freeze in multimodal models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import param


@dataclass
class VisionConfig:
    image_max_pixels: int = param(589824, "Maximum pixels of an image input (768*768).", seed="image_max_pixels", ge=1)
    image_min_pixels: int = param(1024, "Minimum pixels of an image input (32*32).", seed="image_min_pixels", ge=1)
    image_do_pan_and_scan: bool = param(
        False, "Pan-and-scan image processing (Gemma 3).", seed="image_do_pan_and_scan",
    )
    crop_to_patches: bool = param(False, "Crop images to patches (InternVL).", seed="crop_to_patches")
    video_max_pixels: int = param(65536, "Maximum pixels of a video frame (256*256).", seed="video_max_pixels", ge=1)
    video_min_pixels: int = param(256, "Minimum pixels of a video frame (16*16).", seed="video_min_pixels", ge=1)
    video_fps: float = param(2.0, "Frames sampled per second of video.", seed="video_fps", gt=0.0)
    video_maxlen: int = param(
        128, "Maximum frames sampled from one video.", seed="video_maxlen", ge=1, seed_default=64,
    )
    use_audio_in_video: bool = param(False, "Also use the audio track of video inputs.", seed="use_audio_in_video")
    audio_sampling_rate: int = param(
        16000, "Rate (Hz) audio clips are resampled to, for an audio-language model (Qwen2-Audio); its feature "
        "extractor is remade for that rate with the same mel frames per second. Refused on models that read no "
        "audio.", seed="audio_sampling_rate", ge=1,
    )
    freeze_vision_tower: bool = param(
        True, "Freeze the vision encoder in multimodal training.", seed="freeze_vision_tower",
    )
    freeze_multi_modal_projector: bool = param(
        True, "Freeze the multimodal projector in multimodal training.", seed="freeze_multi_modal_projector",
    )
    freeze_language_model: bool = param(
        False, "Freeze the language model in multimodal training.", seed="freeze_language_model",
    )
    image_resolution: Optional[int] = param(
        None, "Older flag: longest image side in pixels.", seed="image_resolution", ge=1,
        deprecated="translated to vision.image_max_pixels = r*r", seed_default=512,
    )
    video_resolution: Optional[int] = param(
        None, "Older flag: longest video-frame side in pixels.", seed="video_resolution", ge=1,
        deprecated="translated to vision.video_max_pixels = r*r", seed_default=128,
    )
    train_mm_proj_only: Optional[bool] = param(
        None, "Older flag: train only the multimodal projector.", seed="train_mm_proj_only",
        deprecated="true is translated to freeze_vision_tower=true, freeze_multi_modal_projector=false,"
        " freeze_language_model=true", seed_default=False,
    )
