"""Videos of multimodal rows, without a video processor, for every family that reads videos (model_type qwen2_vl,
qwen2_5_vl, qwen3_vl, llava_next_video; llmpipe.data.mm_video_layouts writes each family's tokens and inputs).

transformers' video processors need torchvision, which this environment cannot have, so llmpipe does their work
with the family's PIL image processor, as LLaMA-Factory does:

- **Decoding** with PyAV (the ``multimodal`` extra): a local path (relative to ``data.media_dir``), a
  ``{"path": ...}`` / ``{"bytes": ...}`` dict, raw bytes or a base64 ``data:`` URL. An unreadable or corrupt file
  is a :class:`MediaError` naming the file and the reason (the row becomes a bad row).
- **A list of frame images** (each entry an image reference, as LLaMA-Factory accepts) is a video too: it is taken
  as a clip of ``vision.video_fps`` frames per second (LLaMA-Factory's assumption: duration = frames / video_fps),
  so the sampling rule keeps every frame up to ``video_maxlen`` (evenly spaced when capped). Its frames must share
  one size.
- **Sampling**: ``n = min(frames, vision.video_maxlen, max(1, floor(duration * vision.video_fps)))`` frames at
  evenly spaced indices from the first to the last; for the Qwen-VL family an odd count gets the last frame
  repeated, so the frames pair up into the model's temporal patches of 2.
- **Per-frame size**: each sampled frame is pre-resized by ``vision.video_max_pixels`` / ``video_min_pixels``
  (the same scaling as images, llmpipe.data.mm_media.pre_resize); the image processor's own sizing applies next.
- **Qwen-VL pixels**: every frame goes through the image processor (resize, rescale, normalise, patches); each
  pair of frames becomes one temporal patch (the two frames side by side on the temporal axis, where an image
  gets one frame twice). ``video_grid_thw = [frames / 2, grid_h, grid_w]``.

The sampled, resized frames are kept in the tokenized rows as PNG bytes (column ``videos``: a list of videos, each
a list of frames) with the sampled fps of each video (column ``video_sampled_fps``: Qwen2.5-VL's
``second_per_grid_ts``); the multimodal collator turns them into the family's inputs (:func:`batch_inputs`).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

from llmpipe.data.media import MediaError, expand_placeholders
from llmpipe.data.mm_video_layouts import LAYOUTS, Clip, layout_for, video_pixels  # noqa: F401  (video_pixels: re-exported)

PLACEHOLDER = "<video>"
SAMPLED_FPS = "video_sampled_fps"   # the tokenized rows' column: the sampled fps of each video


def read(ref, root=None) -> tuple[list, float, float]:
    """(every frame as an RGB PIL image, duration in seconds, frames per second) of video file ``ref``;
    MediaError when it cannot be read."""
    import av

    from llmpipe.data.mm_media import _bytes_of, describe

    data = _bytes_of(ref, root, kind="video")
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise MediaError(f"video {describe(ref)} has no video stream")
            stream = container.streams.video[0]
            frames = [f.to_image().convert("RGB") for f in container.decode(stream)]
            rate = float(stream.average_rate or 0)
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = container.duration / av.time_base
            else:
                duration = len(frames) / rate if rate else 0.0
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
        raise MediaError(f"video {describe(ref)} is not a readable video ({type(e).__name__}: {e})") from None
    if not frames:
        raise MediaError(f"video {describe(ref)} has no frames")
    return frames, duration, rate or (len(frames) / duration if duration else 0.0)


def decode(ref, root=None) -> tuple[list, float]:
    """(every frame as an RGB PIL image, duration in seconds) of video ``ref``; MediaError when it cannot be read."""
    return read(ref, root)[:2]


def read_frames(refs: list, root, fps: float) -> tuple[list, float, float]:
    """A video given as a list of frame images: (its frames, duration, fps), taken as a clip of ``fps`` frames per
    second (vision.video_fps, LLaMA-Factory's assumption); MediaError when a frame cannot be read or the frames
    differ in size."""
    from llmpipe.data.mm_media import describe, open_image

    if not refs:
        raise MediaError("a video given as a list of frames has no frames")
    frames = [open_image(r, root) for r in refs]
    sizes = {f.size for f in frames}
    if len(sizes) > 1:
        raise MediaError(f"the frames of video [{describe(refs[0])}, ...] differ in size ({sorted(sizes)}); a "
                         "video's frames must share one size")
    return frames, len(frames) / fps, fps


def sample_indices(total: int, duration: float, fps: float, maxlen: int, temporal: int = 2) -> list[int]:
    """The frame indices sampled from a video of ``total`` frames lasting ``duration`` seconds (LLaMA-Factory's
    rule), padded with the last one to a multiple of ``temporal``."""
    n = min(total, maxlen, max(1, math.floor(duration * fps + 1e-9)))   # + float slack: a frame list's len/fps*fps
    idx = [int(k * (total - 1) / (n - 1)) if n > 1 else 0 for k in range(n)]   # floor, as numpy's astype(int)
    while len(idx) % temporal:
        idx.append(idx[-1])
    return idx


@dataclass
class VideoTokens:
    """How a model's videos become tokens: the sampling and per-frame size flags (vision.*), the model's image
    processor and its family's video layout (llmpipe.data.mm_video_layouts; ``kind`` is the model_type)."""
    image_processor: Any
    fps: float = 2.0                 # vision.video_fps
    maxlen: int = 128                # vision.video_maxlen
    max_pixels: int | None = None    # vision.video_max_pixels
    min_pixels: int | None = None    # vision.video_min_pixels
    kind: str = "qwen2_vl"
    facts: dict = field(default_factory=dict)   # llmpipe-mm.json of the model

    def __post_init__(self):
        self.layout = layout_for(self.kind, self.image_processor, self.facts)
        if self.layout is None:
            raise ValueError(f"llmpipe reads no videos for {self.kind}")

    @property
    def video_token(self) -> str:
        return self.layout.video_token

    def clip(self, ref, root=None) -> Clip:
        """The sampled, pre-resized frames of ``ref`` (a video file, or a list of frame images), padded to the
        layout's temporal patch, with their timing."""
        from llmpipe.data.mm_media import pre_resize

        frames, duration, fps = read_frames(ref, root, self.fps) if isinstance(ref, list) else read(ref, root)
        idx = sample_indices(len(frames), duration, self.fps, self.maxlen, 1)
        padded = sample_indices(len(frames), duration, self.fps, self.maxlen, self.layout.temporal)
        return Clip([pre_resize(frames[i], self.max_pixels, self.min_pixels) for i in padded], idx, fps, duration)

    def frames(self, ref, root=None) -> list:
        """The sampled, pre-resized frames of ``ref`` (PIL images)."""
        return self.clip(ref, root).frames

    def count(self, frames: list) -> int:
        """Video tokens of already sampled frames."""
        return self.layout.text(Clip(frames, list(range(len(frames))), self.fps, len(frames) / self.fps))[1]

    def prepare(self, ref, root=None) -> tuple[list[bytes], int, str, float]:
        """(PNG bytes of the sampled frames, video tokens, the text that replaces ``<video>``, the sampled fps) of
        ``ref``; MediaError when it cannot be used."""
        from llmpipe.data.mm_media import to_png

        clip = self.clip(ref, root)
        try:
            text, n = self.layout.text(clip)
        except ValueError as e:
            raise MediaError(f"the image processor refuses its frames ({e})") from None
        return [to_png(f) for f in clip.frames], n, text, clip.sampled_fps


VIDEO_FAMILIES = LAYOUTS   # model_type values whose videos llmpipe reads


def family_of(mm, model_folder=None) -> str | None:
    """The model_type of the model in ``model_folder`` (its config.json), else the one its published processor
    names (llmpipe-mm.json; a Qwen2-VL folder from before the family layer has none)."""
    import json
    from pathlib import Path

    try:
        return json.loads((Path(model_folder) / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, TypeError):
        return (getattr(mm, "facts", None) or {}).get("model_type", "qwen2_vl")


def attach(mm, model_folder, vision) -> None:
    """Give the image tokenization ``mm`` of the model in ``model_folder`` its videos (``mm.video``), sampled and
    sized by the ``vision`` settings, when the model's family reads videos here; otherwise ``mm.video`` is None."""
    kind = family_of(mm, model_folder)
    mm.video = VideoTokens(mm.image_processor, fps=vision.video_fps, maxlen=vision.video_maxlen,
                           max_pixels=vision.video_max_pixels, min_pixels=vision.video_min_pixels, kind=kind,
                           facts=getattr(mm, "facts", None) or {}) if kind in VIDEO_FAMILIES else None


def expand_videos(example: dict, video: VideoTokens | None, root=None
                  ) -> tuple[dict, list[list[bytes]], int, list[float]]:
    """(``example`` with each ``<video>`` expanded in order, the videos' frames as PNG bytes, video tokens in all,
    the sampled fps of each video) of a row; MediaError when a video cannot be used or the model reads no videos."""
    refs = (example.get("media") or {}).get("videos", [])
    if not refs:
        return example, [], 0, []
    if video is None:
        raise MediaError("the row has videos and the model reads none")
    videos, counts, texts, rates = [], [], [], []
    for ref in refs:
        frames, n, text, fps = video.prepare(ref, root)
        videos.append(frames)
        counts.append(n)
        texts.append(text)
        rates.append(fps)
    out = expand_placeholders(example["messages"], PLACEHOLDER, texts)
    return {**example, "messages": out}, videos, sum(counts), rates


def batch_inputs(mm, tokenizer, features: list[dict], batch: dict) -> None:
    """Add the family's video inputs of ``features`` (tokenized rows with ``videos``) to the collated ``batch``:
    the pixels (and Qwen2.5-VL's ``second_per_grid_ts``), and type 2 on the video tokens where the family takes
    ``mm_token_type_ids``."""
    from llmpipe.data.mm_media import from_png

    kind = (getattr(mm, "facts", None) or {}).get("model_type", "qwen2_vl")
    layout = layout_for(kind, mm.image_processor, mm.facts)
    if layout is None:
        raise ValueError(f"the rows have videos and llmpipe reads no videos for {kind}")
    clips = []
    for f in features:
        videos = f.get("videos") or []
        rates = f.get(SAMPLED_FPS) or [None] * len(videos)
        clips += [([from_png(b) for b in v], fps) for v, fps in zip(videos, rates)]
    batch.update(layout.inputs(clips))
    if layout.type_ids:
        video_id = tokenizer.convert_tokens_to_ids(layout.video_token)
        batch[layout.type_ids] = batch[layout.type_ids] + 2 * (batch["input_ids"] == video_id).long()


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
    result gains a ``videos`` column (PNG frames per video) and a ``video_sampled_fps`` column. Video tokens never carry a label; a row whose video
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
            ex, videos, n, rates = expand_videos(ex, video, root)
        except MediaError as e:
            rep.bad(ex["_row"], str(e))
            continue
        if cutoff and n > cutoff:
            rep.bad(ex["_row"], f"its {n} video tokens alone exceed cutoff_len={cutoff} (raise data.cutoff_len, or "
                                "lower vision.video_maxlen / video_fps / video_max_pixels)")
            continue
        ready.append(ex)
        frames.append((ex["_row"], videos, n, rates))
    dropped = _Dropped(rep)
    ds = mm_tokenize.tokenize_examples(ready, tokenizer, mm, proc, dropped, root) if ready else None
    kept = [f for f in frames if f[0] not in dropped.rows]
    video_id = tokenizer.convert_tokens_to_ids(video.video_token) if video is not None else None
    rows = []
    for r, (row, videos, n, rates) in zip(ds if ds is not None else [], kept):
        ids = r["input_ids"]
        have = sum(1 for t in ids if t == video_id)
        if have != n:
            rep.bad(row, f"cutoff_len={cutoff} would cut into its video tokens ({have} of {n} kept); raise "
                         "data.cutoff_len or lower vision.video_maxlen / video_max_pixels")
            continue
        rows.append({**r, "labels": [IGNORE_INDEX if t == video_id else lab for t, lab in zip(ids, r["labels"])],
                     "videos": videos, SAMPLED_FPS: rates})
    features = ds.features.copy() if ds is not None else mm_tokenize.tokenize_examples(
        [], tokenizer, mm, proc, rep, root).features.copy()
    features["videos"] = datasets.Sequence(datasets.Sequence(datasets.Value("binary")))
    features[SAMPLED_FPS] = datasets.Sequence(datasets.Value("float64"))
    return datasets.Dataset.from_list(rows, features=features)
