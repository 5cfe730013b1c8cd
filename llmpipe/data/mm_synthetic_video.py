"""Deterministic generator of llmpipe's bundled video data (LLaMA-Factory's multimodal format, ``videos`` column).

    python -m llmpipe.data.synthetic --out data      (writes these files too)

``vlm_motion`` / ``vlm_motion_eval`` (held out, other seeds): a short clip (8 frames at 4 fps, 2 s, 56x56) of one
filled square in a random colour on white, moving left or right at a random speed from a random start, and the
same question for every row, so the answer (``left`` / ``right``) depends on the motion alone: chance is 50 %.
Rows are ``{"messages": [...], "videos": [...]}`` with a ``<video>`` placeholder; each clip is an MPEG-4 file
(PyAV, lossless-enough ``mpeg4`` codec at a fixed quantiser) embedded as a base64 ``data:video/mp4`` URL, so the
repository holds no binary files. Needs PyAV and Pillow (the ``multimodal`` extra).

``omni_motion`` / ``omni_motion_eval`` (held out, other seeds): the same clips with an audio track, a tone high
(600-900 Hz) or low (110-220 Hz) as long as the clip (8-bit PCM at 2 kHz in a QuickTime file, to stay small), and
the question ``<video>Which way does the square move, and is the sound high or low?``. The pitch is only in the
video's own audio track, so only a model that reads it (Qwen2.5-Omni's thinker with vision.use_audio_in_video=true)
can answer its second half; chance is 25 %.
"""
from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

SEED = 8642
SIZE = 56
FRAMES, FPS = 8, 4
QUESTION = "<video>Which way does the square move?"
DIRECTIONS = ("left", "right")
N_TRAIN, N_EVAL = 64, 16
_COLUMNS = {"messages": "messages", "videos": "videos"}
_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
INFO = {name: {"file_name": f"{name}.json", "formatting": "sharegpt", "columns": _COLUMNS, "tags": _TAGS}
        for name in ("vlm_motion", "vlm_motion_eval", "omni_motion", "omni_motion_eval")}
OMNI_QUESTION = "<video>Which way does the square move, and is the sound high or low?"
PITCHES = {"high": (600, 900), "low": (110, 220)}
N_OMNI_TRAIN, N_OMNI_EVAL = 24, 8
# the audio track's codec, sample format and numpy type per container (mp4 takes no 8-bit PCM)
_TRACK = {"mp4": ("pcm_s16le", "s16", "<i2"), "mov": ("pcm_u8", "u8", "u1")}


def frames(rng: random.Random, direction: str, size: int = SIZE, n: int = FRAMES) -> list:
    """``n`` frames of a square crossing the frame towards ``direction``."""
    from PIL import Image, ImageDraw

    side = rng.randint(10, 16)
    colour = tuple(rng.randint(0, 160) for _ in range(3))
    step = rng.randint(3, 5)
    span = step * (n - 1)
    x0 = rng.randint(0, size - side - span)
    y = rng.randint(0, size - side)
    out = []
    for k in range(n):
        x = x0 + k * step if direction == "right" else x0 + span - k * step
        img = Image.new("RGB", (size, size), (255, 255, 255))
        ImageDraw.Draw(img).rectangle([x, y, x + side - 1, y + side - 1], fill=colour)
        out.append(img)
    return out


def encode(images: list, fps: int = FPS, tone_hz: float | None = None, rate: int = 16000,
           container: str = "mp4") -> bytes:
    """An MPEG-4 clip of ``images`` (PyAV; one thread and a fixed quantiser, so the bytes are reproducible); with
    ``tone_hz``, plus an audio track: a sine tone of that pitch as long as the clip (PCM at ``rate`` Hz, 16-bit in
    mp4, 8-bit in mov: the video's audio for vision.use_audio_in_video)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = images[0].size
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        stream.options = {"qscale": "2"}
        out.metadata["encoder"] = ""
        sound = out.add_stream(_TRACK[container][0], rate=rate, layout="mono") if tone_hz else None
        for img in images:
            for packet in stream.encode(av.VideoFrame.from_image(img)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            _mux_tone(out, sound, tone_hz, len(images) / fps, rate, container)
    return buf.getvalue()


def _mux_tone(out, stream, tone_hz: float, seconds: float, rate: int, container: str) -> None:
    import av
    import numpy as np

    _, fmt, dtype = _TRACK[container]
    wave = 0.5 * np.sin(2 * np.pi * tone_hz * np.arange(int(seconds * rate)) / rate)
    samples = (wave * 127 + 128 if fmt == "u8" else wave * 32767).astype(dtype)[None]
    frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
    frame.sample_rate = rate
    for packet in [*stream.encode(frame), *stream.encode()]:
        out.mux(packet)


def data_url(data: bytes) -> str:
    return "data:video/mp4;base64," + base64.b64encode(data).decode("ascii")


def rows(n: int, seed: str) -> list[dict]:
    rng = random.Random(f"{SEED}:{seed}")
    out = []
    for i in range(n):
        direction = DIRECTIONS[i % len(DIRECTIONS)]
        out.append({"messages": [{"role": "user", "content": QUESTION},
                                 {"role": "assistant", "content": direction}],
                    "videos": [data_url(encode(frames(rng, direction)))]})
    rng.shuffle(out)
    return out


def omni_rows(n: int, seed: str) -> list[dict]:
    """``omni_motion`` rows: moving squares with a tone track, half left / half right, pitches balanced across both."""
    rng = random.Random(f"{SEED}:omni:{seed}")
    out = []
    for i in range(n):
        direction, pitch = DIRECTIONS[i % 2], sorted(PITCHES)[(i // 2) % 2]
        clip = encode(frames(rng, direction), tone_hz=rng.uniform(*PITCHES[pitch]), rate=2000, container="mov")
        out.append({"messages": [{"role": "user", "content": OMNI_QUESTION},
                                 {"role": "assistant", "content": f"{direction}, {pitch}"}],
                    "videos": ["data:video/quicktime;base64," + base64.b64encode(clip).decode("ascii")]})
    rng.shuffle(out)
    return out


def write_all(out: str | Path) -> list[Path]:
    out = Path(out)
    written = []
    for name, rs in {"vlm_motion.json": rows(N_TRAIN, "train"), "vlm_motion_eval.json": rows(N_EVAL, "eval"),
                     "omni_motion.json": omni_rows(N_OMNI_TRAIN, "train"),
                     "omni_motion_eval.json": omni_rows(N_OMNI_EVAL, "eval")}.items():
        p = out / name
        p.write_text("[\n" + ",\n".join(json.dumps(r) for r in rs) + "\n]\n", encoding="utf-8")
        written.append(p)
    return written
