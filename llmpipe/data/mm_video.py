"""Videos of multimodal rows for a Qwen-VL-layout model (``model=tiny_vl``, Qwen2-VL), without a video processor.

transformers' Qwen2-VL video processor needs torchvision, which this environment cannot have, so llmpipe does
its work with the PIL image processor, as LLaMA-Factory does:

- **Decoding** with PyAV (the ``multimodal`` extra): a local path (relative to ``data.media_dir``), a
  ``{"path": ...}`` / ``{"bytes": ...}`` dict, raw bytes or a base64 ``data:`` URL. An unreadable or corrupt file
  is a :class:`MediaError` naming the file and the reason (the row becomes a bad row).
- **Sampling**: ``n = min(frames, vision.video_maxlen, max(1, floor(duration * vision.video_fps)))`` frames at
  evenly spaced indices from the first to the last; an odd count gets the last frame repeated, so the frames pair
  up into the model's temporal patches of 2.
- **Per-frame size**: each sampled frame is pre-resized by ``vision.video_max_pixels`` / ``video_min_pixels``
  (the same scaling as images, llmpipe.data.mm_media.pre_resize); the image processor's own bounds apply next.
- **Pixels**: every frame goes through the image processor (resize, rescale, normalise, 14-px patches); each pair
  of frames becomes one temporal patch (the two frames side by side on the temporal axis, where an image gets one
  frame twice). ``video_grid_thw = [frames / 2, grid_h, grid_w]``.
- **Tokens**: ``<video>`` becomes ``<|vision_start|>`` + ``<|video_pad|>`` x ``grid_t * grid_h * grid_w /
  merge_size**2`` + ``<|vision_end|>``; video tokens carry ``mm_token_type_ids`` 2 and never a label.

The sampled, resized frames are kept in the tokenized rows as PNG bytes (column ``videos``: a list of videos, each
a list of frames); the multimodal collator turns them into ``pixel_values_videos`` / ``video_grid_thw``.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from llmpipe.data.media import MediaError, expand_placeholders

PLACEHOLDER = "<video>"


def decode(ref, root=None) -> tuple[list, float]:
    """(every frame as an RGB PIL image, duration in seconds) of video ``ref``; MediaError when it cannot be read."""
    import av

    from llmpipe.data.mm_media import _bytes_of, describe

    data = _bytes_of(ref, root, kind="video")
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise MediaError(f"video {describe(ref)} has no video stream")
            stream = container.streams.video[0]
            frames = [f.to_image().convert("RGB") for f in container.decode(stream)]
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = container.duration / av.time_base
            else:
                rate = float(stream.average_rate or 0)
                duration = len(frames) / rate if rate else 0.0
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
        raise MediaError(f"video {describe(ref)} is not a readable video ({type(e).__name__}: {e})") from None
    if not frames:
        raise MediaError(f"video {describe(ref)} has no frames")
    return frames, duration


def sample_indices(total: int, duration: float, fps: float, maxlen: int, temporal: int = 2) -> list[int]:
    """The frame indices sampled from a video of ``total`` frames lasting ``duration`` seconds (LLaMA-Factory's
    rule), padded with the last one to a multiple of ``temporal``."""
    n = min(total, maxlen, max(1, math.floor(duration * fps)))
    idx = [int(k * (total - 1) / (n - 1)) if n > 1 else 0 for k in range(n)]   # floor, as numpy's astype(int)
    while len(idx) % temporal:
        idx.append(idx[-1])
    return idx


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
class VideoTokens:
    """How a Qwen-VL-layout model's videos become tokens: the sampling and per-frame size flags (vision.*) and the
    model's image processor."""
    image_processor: Any
    fps: float = 2.0                 # vision.video_fps
    maxlen: int = 128                # vision.video_maxlen
    max_pixels: int | None = None    # vision.video_max_pixels
    min_pixels: int | None = None    # vision.video_min_pixels
    video_token: str = "<|video_pad|>"
    vision_start: str = "<|vision_start|>"
    vision_end: str = "<|vision_end|>"

    def frames(self, ref, root=None) -> list:
        """The sampled, pre-resized frames of ``ref`` (PIL images, an even count)."""
        from llmpipe.data.mm_media import pre_resize

        frames, duration = decode(ref, root)
        idx = sample_indices(len(frames), duration, self.fps, self.maxlen,
                             int(getattr(self.image_processor, "temporal_patch_size", 2) or 1))
        return [pre_resize(frames[i], self.max_pixels, self.min_pixels) for i in idx]

    def count(self, frames: list) -> int:
        """Video tokens of already sampled frames."""
        grid = self.image_processor(images=[frames[0]], return_tensors="np")["image_grid_thw"][0]
        merge = int(getattr(self.image_processor, "merge_size", 2) or 1)
        t = int(getattr(self.image_processor, "temporal_patch_size", 2) or 1)
        return (len(frames) // t) * int(grid[1] * grid[2]) // (merge * merge)

    def prepare(self, ref, root=None) -> tuple[list[bytes], int]:
        """(PNG bytes of the sampled frames, video tokens) of ``ref``; MediaError when it cannot be used."""
        from llmpipe.data.mm_media import to_png

        frames = self.frames(ref, root)
        try:
            n = self.count(frames)
        except ValueError as e:
            raise MediaError(f"the image processor refuses its frames ({e})") from None
        return [to_png(f) for f in frames], n

    def expansion(self, n: int) -> str:
        return self.vision_start + self.video_token * n + self.vision_end


VIDEO_FAMILIES = ("qwen2_vl",)   # model_type values whose videos llmpipe reads (Qwen2-VL: temporal step 1)


def attach(mm, model_folder, vision) -> None:
    """Give the image tokenization ``mm`` of the model in ``model_folder`` its videos (``mm.video``), sampled and
    sized by the ``vision`` settings, when the model's family reads videos here; otherwise ``mm.video`` is None."""
    import json
    from pathlib import Path

    try:
        kind = json.loads((Path(model_folder) / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        kind = None
    mm.video = VideoTokens(mm.image_processor, fps=vision.video_fps, maxlen=vision.video_maxlen,
                           max_pixels=vision.video_max_pixels, min_pixels=vision.video_min_pixels) \
        if kind in VIDEO_FAMILIES else None


def expand_videos(example: dict, video: VideoTokens | None, root=None) -> tuple[dict, list[list[bytes]], int]:
    """(``example`` with each ``<video>`` expanded in order, the videos' frames as PNG bytes, video tokens in all) of
    a row; MediaError when a video cannot be used or the model reads no videos."""
    refs = (example.get("media") or {}).get("videos", [])
    if not refs:
        return example, [], 0
    if video is None:
        raise MediaError("the row has videos and the model reads none")
    videos, counts = [], []
    for ref in refs:
        frames, n = video.prepare(ref, root)
        videos.append(frames)
        counts.append(n)
    out = expand_placeholders(example["messages"], PLACEHOLDER, [video.expansion(n) for n in counts])
    return {**example, "messages": out}, videos, sum(counts)


class _Dropped:
    """A row report that remembers which rows the image tokenizer dropped (and passes everything on)."""

    def __init__(self, rep):
        self.rep, self.rows = rep, set()

    def bad(self, row, reason):
        self.rows.add(row)
        self.rep.bad(row, reason)

    def __getattr__(self, name):
        return getattr(self.rep, name)


def tokenize_examples(examples: list[dict], tokenizer, mm, proc: dict, rep, root):
    """llmpipe.data.mm_tokenize.tokenize_examples with videos: each row's ``<video>`` placeholders are expanded first
    (a video that cannot be read or sampled makes the row bad), the rows are tokenized with their images, and the
    result gains a ``videos`` column (PNG frames per video). Video tokens never carry a label; a row whose video
    tokens alone exceed cutoff_len, or whose truncation cuts into them, is a bad row with that reason. Without any
    video in ``examples`` this is mm_tokenize's function unchanged."""
    import datasets

    from llmpipe.data import mm_tokenize
    from llmpipe.data.processors import IGNORE_INDEX

    if not any((ex.get("media") or {}).get("videos") for ex in examples):
        return mm_tokenize.tokenize_examples(examples, tokenizer, mm, proc, rep, root)
    video = getattr(mm, "video", None)
    cutoff = proc.get("cutoff_len")
    ready, frames = [], []
    for ex in examples:
        try:
            ex, videos, n = expand_videos(ex, video, root)
        except MediaError as e:
            rep.bad(ex["_row"], str(e))
            continue
        if cutoff and n > cutoff:
            rep.bad(ex["_row"], f"its {n} video tokens alone exceed cutoff_len={cutoff} (raise data.cutoff_len, or "
                                "lower vision.video_maxlen / video_fps / video_max_pixels)")
            continue
        ready.append(ex)
        frames.append((ex["_row"], videos, n))
    dropped = _Dropped(rep)
    ds = mm_tokenize.tokenize_examples(ready, tokenizer, mm, proc, dropped, root) if ready else None
    kept = [f for f in frames if f[0] not in dropped.rows]
    video_id = tokenizer.convert_tokens_to_ids(video.video_token) if video is not None else None
    rows = []
    for r, (row, videos, n) in zip(ds if ds is not None else [], kept):
        ids = r["input_ids"]
        have = sum(1 for t in ids if t == video_id)
        if have != n:
            rep.bad(row, f"cutoff_len={cutoff} would cut into its video tokens ({have} of {n} kept); raise "
                         "data.cutoff_len or lower vision.video_maxlen / video_max_pixels")
            continue
        rows.append({**r, "labels": [IGNORE_INDEX if t == video_id else lab for t, lab in zip(ids, r["labels"])],
                     "videos": videos})
    features = ds.features.copy() if ds is not None else mm_tokenize.tokenize_examples(
        [], tokenizer, mm, proc, rep, root).features.copy()
    features["videos"] = datasets.Sequence(datasets.Sequence(datasets.Value("binary")))
    return datasets.Dataset.from_list(rows, features=features)
