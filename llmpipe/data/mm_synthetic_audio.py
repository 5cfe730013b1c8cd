"""Deterministic tone clips for audio tests (LLaMA-Factory's format: ``messages`` + ``audios`` with ``<audio>``).

Each clip is a sine tone, high (880-1320 Hz) or low (110-220 Hz), of random length (0.5-1 s) and loudness, written
as a WAV file at a given sampling rate (default 8 kHz, so that reading it at 16 kHz needs a resample) and embedded
as a base64 ``data:audio/wav`` URL. The question is the same for every row; the answer (``high`` / ``low``)
depends on the pitch alone. Needs soundfile (the ``multimodal`` extra).

The bundled ``audio_tones`` (32 rows) and ``audio_tones_eval`` (16 held-out rows, other seeds) are such clips at
4 kHz, 0.25-0.5 s, 8-bit PCM (small enough to keep in the repository), half high and half low, shuffled; written by
:func:`write_all` (``python -m llmpipe.data.synthetic``). Chance is 50 %.
"""
from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

SEED = 9753
QUESTION = "<audio>Is the tone high or low?"
PITCHES = {"high": (880, 1320), "low": (110, 220)}
N_TRAIN, N_EVAL = 32, 16
BUNDLED = {"rate": 4000, "seconds": (0.25, 0.5), "subtype": "PCM_U8"}
_COLUMNS = {"messages": "messages", "audios": "audios"}
_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
INFO = {
    "audio_tones": {"file_name": "audio_tones.json", "formatting": "sharegpt", "columns": _COLUMNS, "tags": _TAGS},
    "audio_tones_eval": {"file_name": "audio_tones_eval.json", "formatting": "sharegpt", "columns": _COLUMNS,
                         "tags": _TAGS},
}


def tone(freq: float, seconds: float, rate: int, loudness: float = 0.5, subtype: str = "PCM_16") -> bytes:
    """A WAV file (mono; 16-bit PCM unless ``subtype`` says otherwise) of a sine tone."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (loudness * np.sin(2 * np.pi * freq * t)).astype("float32"), rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def rows(n: int, seed: str = "train", rate: int = 8000, seconds: tuple[float, float] = (0.5, 1.0),
         subtype: str = "PCM_16") -> list[dict]:
    rng = random.Random(f"{SEED}:{seed}")
    out = []
    for i in range(n):
        pitch = sorted(PITCHES)[i % len(PITCHES)]
        wav = tone(rng.uniform(*PITCHES[pitch]), rng.uniform(*seconds), rate, rng.uniform(0.2, 0.8), subtype)
        out.append({"messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": pitch}],
                    "audios": ["data:audio/wav;base64," + base64.b64encode(wav).decode("ascii")]})
    return out


def bundled_rows(n: int, seed: str) -> list[dict]:
    out = rows(n, seed, BUNDLED["rate"], BUNDLED["seconds"], BUNDLED["subtype"])
    random.Random(f"{SEED}:{seed}:order").shuffle(out)
    return out


def write_all(out: str | Path) -> list[Path]:
    out = Path(out)
    written = []
    for name, rs in {"audio_tones.json": bundled_rows(N_TRAIN, "train"),
                     "audio_tones_eval.json": bundled_rows(N_EVAL, "eval")}.items():
        p = out / name
        p.write_text("[\n" + ",\n".join(json.dumps(r) for r in rs) + "\n]\n", encoding="utf-8")
        written.append(p)
    return written
