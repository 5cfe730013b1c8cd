"""Deterministic tone clips for audio tests (LLaMA-Factory's format: ``messages`` + ``audios`` with ``<audio>``).

Each clip is a sine tone, high (880-1320 Hz) or low (110-220 Hz), of random length (0.5-1 s) and loudness, written
as a WAV file at a given sampling rate (default 8 kHz, so that reading it at 16 kHz needs a resample) and embedded
as a base64 ``data:audio/wav`` URL. The question is the same for every row; the answer (``high`` / ``low``)
depends on the pitch alone. Needs soundfile (the ``multimodal`` extra).
"""
from __future__ import annotations

import base64
import io
import random

SEED = 9753
QUESTION = "<audio>Is the tone high or low?"
PITCHES = {"high": (880, 1320), "low": (110, 220)}


def tone(freq: float, seconds: float, rate: int, loudness: float = 0.5) -> bytes:
    """A WAV file (16-bit PCM, mono) of a sine tone."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (loudness * np.sin(2 * np.pi * freq * t)).astype("float32"), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def rows(n: int, seed: str = "train", rate: int = 8000) -> list[dict]:
    rng = random.Random(f"{SEED}:{seed}")
    out = []
    for i in range(n):
        pitch = sorted(PITCHES)[i % len(PITCHES)]
        wav = tone(rng.uniform(*PITCHES[pitch]), rng.uniform(0.5, 1.0), rate, rng.uniform(0.2, 0.8))
        out.append({"messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": pitch}],
                    "audios": ["data:audio/wav;base64," + base64.b64encode(wav).decode("ascii")]})
    return out
