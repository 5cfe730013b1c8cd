"""Audio of multimodal rows for a Qwen2-Audio-layout model (``Qwen2AudioForConditionalGeneration``).

- **Decoding**: soundfile (wav, flac, ogg, mp3) and PyAV for anything else (e.g. the audio track of a video file),
  from a local path (relative to ``data.media_dir``), a ``{"path"}`` / ``{"bytes"}`` dict, raw bytes or a base64
  ``data:`` URL; channels are averaged to mono. An unreadable file is a :class:`MediaError` naming it.
- **Resampling** to ``vision.audio_sampling_rate`` (polyphase, scipy). The feature extractor is made for that rate
  (:func:`at_rate`, when the load stage publishes the processor): its hop and FFT window keep their duration (10 ms
  and 25 ms for Whisper's), its window its seconds, so the encoder still gets its exact number of mel frames and
  the same frames per second, while the samples per second and the mel bank's top (rate / 2) follow the setting.
- **Features**: the model's WhisperFeatureExtractor pads every clip to its window (``chunk_length`` seconds; the
  encoder wants exactly that many mel frames) and returns the mask of the real frames.
- **Tokens**: ``<audio>`` becomes ``<|audio_bos|>`` + ``<|AUDIO|>`` x n + ``<|audio_eos|>``, with n from the real
  mel frames L: ``((L - 1) // 2 + 1 - 2) // 2 + 1`` (the encoder's two stride-2 steps), as transformers' processor
  counts them. Audio tokens never carry a label.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from llmpipe.data.media import MediaError, expand_placeholders

PLACEHOLDER = "<audio>"
AUDIO_TOKENS = ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")


def decode(ref, root=None):
    """(mono float32 samples, sampling rate) of audio ``ref``; MediaError when it cannot be read."""
    import numpy as np
    import soundfile as sf

    from llmpipe.data.mm_media import _bytes_of, describe

    data = _bytes_of(ref, root, kind="audio")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        samples, rate = _decode_av(data, ref)
    if not len(samples):
        raise MediaError(f"audio {describe(ref)} has no samples")
    return np.asarray(samples, dtype="float32"), int(rate)


def _decode_av(data: bytes, ref):
    import av
    import numpy as np

    from llmpipe.data.mm_media import describe

    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise MediaError(f"audio {describe(ref)} has no audio stream")
            stream = container.streams.audio[0]
            chunks = [_scaled(f.to_ndarray()) for f in container.decode(stream)]
            rate = stream.rate
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
        raise MediaError(f"audio {describe(ref)} is not readable audio ({type(e).__name__}: {e})") from None
    if not chunks:
        raise MediaError(f"audio {describe(ref)} has no samples")
    planar = [c if c.ndim == 2 and c.shape[0] <= 8 else c.reshape(1, -1) for c in chunks]
    return np.concatenate(planar, axis=1).mean(axis=0), rate


def _scaled(samples):
    """A decoded frame's samples as float32 in [-1, 1] (integer PCM, e.g. s16 in a video's track, is scaled)."""
    if samples.dtype.kind == "u":
        bits = samples.dtype.itemsize * 8
        return (samples.astype("float32") - 2 ** (bits - 1)) / 2 ** (bits - 1)
    if samples.dtype.kind == "i":
        return samples.astype("float32") / 2 ** (samples.dtype.itemsize * 8 - 1)
    return samples.astype("float32")


def resample(samples, rate: int, target: int):
    """``samples`` at ``rate`` Hz resampled to ``target`` Hz (polyphase filter)."""
    from math import gcd

    from scipy.signal import resample_poly

    if rate == target:
        return samples
    g = gcd(int(rate), int(target))
    return resample_poly(samples, target // g, rate // g).astype("float32")


def rate_settings(fe: dict, rate: int) -> dict | None:
    """The WhisperFeatureExtractor settings (``fe``: its saved dict) for audio at ``rate`` Hz: the same seconds per
    hop, per FFT window and per clip window; None when the clip window would not hold the same number of mel
    frames (the encoder insists on its exact length) or a hop would be shorter than one sample. No torch."""
    sr, hop, n_fft, chunk = (int(fe[k]) for k in ("sampling_rate", "hop_length", "n_fft", "chunk_length"))
    new_hop, new_fft = round(hop * rate / sr), max(2, round(n_fft * rate / sr))
    if new_hop < 1 or (chunk * rate) // new_hop != (chunk * sr) // hop:
        return None
    return {"sampling_rate": int(rate), "hop_length": new_hop, "n_fft": new_fft, "chunk_length": chunk}


def at_rate(fe, rate: int):
    """``fe`` (a WhisperFeatureExtractor) remade for audio at ``rate`` Hz (:func:`rate_settings`); ValueError when
    no such extractor keeps the encoder's window."""
    if int(rate) == int(fe.sampling_rate):
        return fe
    settings = rate_settings(fe.to_dict(), rate)
    if settings is None:
        raise ValueError(f"vision.audio_sampling_rate={rate}: the feature extractor's {fe.chunk_length} s window "
                         f"would not hold its {fe.nb_max_frames} mel frames at that rate")
    return type(fe)(feature_size=fe.feature_size, padding_value=fe.padding_value, dither=fe.dither,
                    return_attention_mask=fe.return_attention_mask, **settings)


def token_count(mel_frames: int) -> int:
    return ((mel_frames - 1) // 2 + 1 - 2) // 2 + 1


@dataclass
class AudioTokens:
    """How a Qwen2-Audio-layout model's audio becomes tokens: its feature extractor and vision.audio_sampling_rate."""
    feature_extractor: Any
    sampling_rate: int = 16000       # vision.audio_sampling_rate
    audio_token: str = "<|AUDIO|>"
    audio_bos: str = "<|audio_bos|>"
    audio_eos: str = "<|audio_eos|>"

    def samples(self, ref, root=None):
        """The mono samples of ``ref`` at ``sampling_rate``, cut to the feature extractor's window."""
        samples, rate = decode(ref, root)
        out = resample(samples, rate, self.sampling_rate)
        return out[: int(self.feature_extractor.n_samples)]

    def features(self, clips: list) -> dict:
        """``input_features`` (padded to the window) and ``feature_attention_mask`` of ``clips`` (sample arrays)."""
        out = self.feature_extractor(clips, sampling_rate=self.sampling_rate, padding="max_length",
                                     return_attention_mask=True, return_tensors="pt")
        return {"input_features": out["input_features"], "feature_attention_mask": out["attention_mask"]}

    def count(self, clip) -> int:
        return token_count(int(self.features([clip])["feature_attention_mask"].sum()))

    def expansion(self, n: int) -> str:
        return self.audio_bos + self.audio_token * n + self.audio_eos

    def expand(self, messages: list[dict], counts: list[int]) -> list[dict]:
        """``messages`` with each ``<audio>`` replaced, in order, by its expansion."""
        return expand_placeholders(messages, PLACEHOLDER, [self.expansion(n) for n in counts])

    # --- the pipeline's side (llmpipe.data.mm_audio_rows, the audio collator) --------------------------------------
    column = "audios"   # the media column this tokenization reads (an image model's reads "images")
    video = None        # an audio model reads no videos

    def prepare(self, ref, root=None) -> tuple[bytes, int]:
        """(the clip's samples at ``sampling_rate`` as float32 bytes, its audio tokens); MediaError when unusable."""
        import numpy as np

        clip = self.samples(ref, root)
        return np.asarray(clip, dtype="<f4").tobytes(), self.count(clip)

    def batch_inputs(self, clips: list[bytes]) -> dict:
        """``input_features`` and ``feature_attention_mask`` of a batch's clips (prepared bytes), in token order."""
        import numpy as np

        return self.features([np.frombuffer(c, dtype="<f4") for c in clips]) if clips else {}


def load(folder) -> AudioTokens | None:
    """The AudioTokens of an audio model's processor published in ``folder`` (llmpipe.models.audio), else None."""
    import json
    from pathlib import Path

    path = Path(folder) / "llmpipe-mm.json"
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(facts, dict) or facts.get("plugin") != "qwen2_audio":
        return None
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor.from_pretrained(str(folder))
    return AudioTokens(fe, int(fe.sampling_rate), audio_token=facts["audio_token"], audio_bos=facts["audio_bos"],
                       audio_eos=facts["audio_eos"])
