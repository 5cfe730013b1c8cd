"""How one family's sampled video frames become tokens and forward inputs (llmpipe.data.mm_video samples them).

transformers' video processors of these families need torchvision, which this environment cannot have, so each
layout does the video processor's work with the family's PIL image processor, and writes the placeholder text its
composite processor (``replace_video_token``) would write:

- ``qwen2_vl`` / ``qwen2_5_vl``: ``<|vision_start|>`` + ``<|video_pad|>`` x grid_t*grid_h*grid_w/merge² +
  ``<|vision_end|>``; inputs ``pixel_values_videos``, ``video_grid_thw`` and type 2 in ``mm_token_type_ids``.
  Qwen2.5-VL also takes ``second_per_grid_ts`` = temporal_patch_size / the sampled fps of each video
  (``Qwen2_5_VLProcessor._process_videos``): its M-RoPE spaces the temporal positions of a video by
  ``tokens_per_second * second_per_grid_ts``.
- ``qwen3_vl``: per temporal patch ``<{t:.1f} seconds>`` + ``<|vision_start|>`` + ``<|video_pad|>`` x
  grid_h*grid_w/merge² + ``<|vision_end|>``, where t is the mean time of the patch's two frames (source frame
  index / the source's fps, ``Qwen3VLProcessor._calculate_timestamps``); the same inputs as Qwen2-VL. The timing
  reaches the model as text.
- ``llava_next_video``: ``<video>`` x (H/patch)*(W/patch)/stride² per frame (``LlavaNextVideoProcessor``), each
  frame resized (shortest edge), center-cropped, rescaled and normalised as ``LlavaNextVideoVideoProcessor`` does,
  with the image processor's own settings and PIL operations; input ``pixel_values_videos`` (videos, frames, C, H,
  W). Frames are not paired (no temporal patch).
- ``qwen2_5_omni_thinker`` (Qwen2.5-Omni's thinker, llmpipe.data.mm_omni): Qwen2.5-VL's pixels and count as
  ``<|vision_bos|>`` + ``<|VIDEO|>`` x n + ``<|vision_eos|>``; input ``video_second_per_grid`` (temporal patch /
  sampled fps). With its audio track (vision.use_audio_in_video) the frames' and the track's tokens interleave in
  chunks of ``seconds_per_chunk`` (:meth:`OmniVideo.with_audio`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def frame_patches(image_processor, frame):
    """(patches (grid_h*grid_w, C, patch, patch), grid_h, grid_w) of one frame, through the image processor."""
    out = image_processor(images=[frame], return_tensors="np")
    _, gh, gw = (int(x) for x in out["image_grid_thw"][0])
    t = int(image_processor.temporal_patch_size)
    p = int(image_processor.patch_size)
    flat = out["pixel_values"]                          # (gh*gw, C*t*p*p): one frame copied t times
    return flat.reshape(gh * gw, -1, t, p, p)[:, :, 0], gh, gw


def video_pixels(image_processor, videos: list[list]) -> dict:
    """``pixel_values_videos`` and ``video_grid_thw`` of ``videos`` (lists of PIL frames, an even count each, all
    frames of one video the same size), in the layout of transformers' Qwen2-VL video processor."""
    import numpy as np
    import torch

    t = int(image_processor.temporal_patch_size)
    values, grids = [], []
    for frames in videos:
        patches = [frame_patches(image_processor, f) for f in frames]
        (gh, gw) = patches[0][1:]
        if len(frames) % t or any(p[1:] != (gh, gw) for p in patches):
            raise ValueError(f"a video needs a multiple of {t} frames of one size")
        for k in range(0, len(frames), t):
            group = np.stack([patches[k + j][0] for j in range(t)], axis=2)   # (gh*gw, C, t, p, p)
            values.append(group.reshape(gh * gw, -1))
        grids.append([len(frames) // t, gh, gw])
    return {"pixel_values_videos": torch.from_numpy(np.concatenate(values, axis=0)),
            "video_grid_thw": torch.tensor(grids, dtype=torch.long)}


@dataclass
class Clip:
    """A sampled video: its frames (pre-resized PIL images, padded to the layout's temporal patch), their indices
    in the source (before the padding), the source's frames per second and its duration in seconds."""
    frames: list
    indices: list[int]
    fps: float
    duration: float

    @property
    def sampled_fps(self) -> float:
        """Frames per second of the sampled clip (transformers' VideoMetadata.sampled_fps)."""
        return len(self.indices) / self.duration if self.duration > 0 else self.fps


class QwenVideo:
    """The Qwen-VL family's videos (qwen2_vl, qwen2_5_vl, qwen3_vl)."""
    video_token = "<|video_pad|>"
    type_ids = "mm_token_type_ids"

    def __init__(self, kind: str, image_processor: Any, facts: dict):
        self.kind, self.image_processor = kind, image_processor
        self.start = facts.get("vision_start", "<|vision_start|>")
        self.end = facts.get("vision_end", "<|vision_end|>")
        self.temporal = int(getattr(image_processor, "temporal_patch_size", 2) or 1)
        self.merge = int(getattr(image_processor, "merge_size", 2) or 1)

    def _grid(self, frame) -> tuple[int, int]:
        _, gh, gw = (int(x) for x in self.image_processor(images=[frame], return_tensors="np")["image_grid_thw"][0])
        return gh, gw

    def timestamps(self, clip: Clip) -> list[float]:
        """Qwen3-VL's time of each temporal patch: the mean of its frames' times (padded with the last index)."""
        idx = list(clip.indices)
        while len(idx) % self.temporal:
            idx.append(idx[-1])
        times = [i / clip.fps for i in idx]
        return [sum(times[k:k + self.temporal]) / self.temporal for k in range(0, len(times), self.temporal)]

    def text(self, clip: Clip) -> tuple[str, int]:
        """(the text that replaces ``<video>``, its video tokens)."""
        gh, gw = self._grid(clip.frames[0])
        per_patch = gh * gw // (self.merge * self.merge)
        patches = len(clip.frames) // self.temporal
        if self.kind == "qwen3_vl":
            block = self.start + self.video_token * per_patch + self.end
            return "".join(f"<{t:.1f} seconds>" + block for t in self.timestamps(clip)), per_patch * patches
        return self.start + self.video_token * (per_patch * patches) + self.end, per_patch * patches

    def inputs(self, clips: list[tuple[list, float]]) -> dict:
        """Forward inputs of a batch's videos ((frames, sampled fps) each, in token order); the caller marks the
        video tokens 2 in ``mm_token_type_ids``."""
        import torch

        out = video_pixels(self.image_processor, [frames for frames, _ in clips])
        if self.kind == "qwen2_5_vl":
            out["second_per_grid_ts"] = torch.tensor([self.temporal / fps for _, fps in clips], dtype=torch.float32)
        return out


class LlavaNextVideo:
    """LLaVA-NeXT-Video's videos: every frame is one CLIP image, pooled by spatial_pool_stride."""
    temporal = 1
    type_ids = None

    def __init__(self, image_processor: Any, facts: dict):
        self.image_processor = image_processor
        self.video_token = facts.get("video_token", "<video>")
        self.patch = int(facts["patch_size"])
        self.stride = int(facts.get("spatial_pool_stride", 2))

    def frame_pixels(self, frame):
        """One frame as LlavaNextVideoVideoProcessor prepares it: (C, H, W) float32."""
        ip = self.image_processor
        img = ip.process_image(frame, do_convert_rgb=True)
        if ip.do_resize:
            img = ip.resize(img, ip.size, resample=ip.resample)
        if ip.do_center_crop:
            img = ip.center_crop(img, ip.crop_size)
        if ip.do_rescale:
            img = ip.rescale(img, ip.rescale_factor)
        if ip.do_normalize:
            img = ip.normalize(img, ip.image_mean, ip.image_std)
        return img.astype("float32")

    def text(self, clip: Clip) -> tuple[str, int]:
        _, h, w = self.frame_pixels(clip.frames[0]).shape
        n = (h // self.patch) * (w // self.patch) // (self.stride * self.stride) * len(clip.frames)
        return self.video_token * n, n

    def inputs(self, clips: list[tuple[list, float]]) -> dict:
        """``pixel_values_videos`` (videos, frames, C, H, W). Videos of different frame counts cannot stack: they go
        as one sequence of all the batch's frames (1, frames, C, H, W); the model embeds each frame alone and fills
        the video tokens in order, so the features are the same."""
        import numpy as np
        import torch

        videos = [np.stack([self.frame_pixels(f) for f in frames]) for frames, _ in clips]
        if len({v.shape for v in videos}) == 1:
            return {"pixel_values_videos": torch.from_numpy(np.stack(videos))}
        return {"pixel_values_videos": torch.from_numpy(np.concatenate(videos))[None]}


class OmniVideo(QwenVideo):
    """The thinker's videos: Qwen2.5-VL's pixels and count, its own tokens, ``video_second_per_grid``."""
    type_ids = None   # the thinker takes no mm_token_type_ids

    def __init__(self, image_processor: Any, facts: dict):
        super().__init__("qwen2_5_vl", image_processor, facts)
        self.video_token = facts.get("video_token", "<|VIDEO|>")
        self.facts = facts

    def with_audio(self, clip, audio_tokens: int) -> tuple[str, int]:
        """(the text of a video whose audio track is ``audio_tokens`` tokens, its video tokens), interleaved chunk
        by chunk as transformers' Qwen2_5OmniProcessor.replace_video_with_audio_token writes it."""
        from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import (
            Qwen2_5OmniProcessor as P,
        )

        gh, gw = self._grid(clip.frames[0])
        grid_t = len(clip.frames) // self.temporal
        f = self.facts

        class Layout:   # what replace_video_with_audio_token reads from the processor
            replace_video_with_audio_token = P.replace_video_with_audio_token
            get_chunked_index = P.get_chunked_index
            audio_bos_token, audio_eos_token = f["audio_bos"], f["audio_eos"]
            video_token, audio_token = f["video_token"], f["audio_token"]
            video_processor = self.image_processor

        import numpy as np

        text = Layout().replace_video_with_audio_token(
            {"video_grid_thw": np.array([[grid_t, gh, gw]]),
             "video_second_per_grid": [self.temporal / clip.sampled_fps]},
            0, {"num_audio_tokens": [audio_tokens]}, 0,
            position_id_per_seconds=f["position_id_per_seconds"], seconds_per_chunk=f["seconds_per_chunk"])
        return self.start + text + self.end, grid_t * gh * gw // (self.merge * self.merge)

    def inputs(self, clips: list[tuple[list, float]]) -> dict:
        import torch

        out = video_pixels(self.image_processor, [frames for frames, _ in clips])
        out["video_second_per_grid"] = torch.tensor([self.temporal / fps for _, fps in clips], dtype=torch.float32)
        return out


def llava_next_images(image_processor: Any, facts: dict):
    """A LLaVA-NeXT-Video model's image expansion: ``replace_image_token`` of transformers' LlavaNextVideoProcessor
    (LLaVA-NeXT's any-resolution count), run on an object that holds the attributes it reads. The processor itself
    cannot be built here: its video processor needs torchvision."""
    from transformers.models.llava_next_video.processing_llava_next_video import (
        LlavaNextVideoProcessor as P,
    )

    class Images:
        replace_image_token = P.replace_image_token
        _get_number_of_features = P._get_number_of_features
        _get_unpadded_features = P._get_unpadded_features

        def __init__(self):
            self.image_processor, self.image_token = image_processor, facts["image_token"]
            self.patch_size, self.vision_feature_select_strategy = int(facts["patch_size"]), facts["strategy"]
            self.num_additional_image_tokens = int(facts["additional_tokens"])

    return Images()


LAYOUTS = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_next_video",   # model_type values whose videos are read
           "qwen2_5_omni_thinker")   # Qwen2.5-Omni's thinker: llmpipe.data.mm_omni


def layout_for(kind: str | None, image_processor: Any, facts: dict):
    """The video layout of a model of ``kind`` (model_type), or None when llmpipe reads no videos for it."""
    if kind in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        return QwenVideo(kind, image_processor, facts)
    if kind == "llava_next_video":
        return LlavaNextVideo(image_processor, facts)
    if kind == "qwen2_5_omni_thinker":
        return OmniVideo(image_processor, facts)
    return None
