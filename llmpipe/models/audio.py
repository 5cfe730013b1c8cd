"""Audio-language models (Qwen2-Audio layout): recognising one, and publishing its processor next to the tokenizer.

A model is an audio-language model when its config has an ``audio_config`` (``Qwen2AudioConfig``). It loads with
``AutoModelForMultimodalLM`` (transformers has no image-text-to-text or causal-LM mapping for it), and trains
through the same stages as the vision-language families (llmpipe.models.vision: ``FAMILIES['qwen2_audio']`` names
its module groups: the audio tower for ``vision.freeze_vision_tower``, the projector, the language model).

``publish`` writes, next to the tokenizer, transformers' own ``Qwen2AudioProcessor`` (``processor_config.json``:
its WhisperFeatureExtractor, made for ``vision.audio_sampling_rate`` by llmpipe.data.mm_audio.at_rate, so
``AutoProcessor`` reloads a trained or exported folder with the rate it was trained at) and ``llmpipe-mm.json``
(the plugin ``qwen2_audio``, LLaMA-Factory's name, and the audio tokens). From a folder published before (merge,
export) it copies those files.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from llmpipe.errors import UserError

PLUGIN = "qwen2_audio"
FAMILIES = ("qwen2_audio",)
FACTS_FILE = "llmpipe-mm.json"
FILES = ("processor_config.json", "preprocessor_config.json", FACTS_FILE)


class AudioModelError(UserError):
    """An audio-language model llmpipe cannot train (the message names its family)."""


def _json(path: Path) -> dict | None:
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def is_audio_config(config: Any) -> bool:
    """Whether a model config (object or config.json dict) describes an audio-language model."""
    value = config.get("audio_config") if isinstance(config, dict) else getattr(config, "audio_config", None)
    return value is not None


def published(folder: str | Path) -> dict | None:
    """The llmpipe-mm.json of an audio model's processor published in ``folder``, else None."""
    facts = _json(Path(folder) / FACTS_FILE)
    return facts if facts is not None and facts.get("plugin") == PLUGIN else None


def publish(source: str | Path, dest: str | Path, vision: Any = None, tokenizer: Any = None) -> bool | None:
    """Save ``source``'s audio processor into ``dest``; None when ``source`` is no audio-language model (nor a
    folder where one was published). ``vision`` (the load stage): the feature extractor is made for
    ``vision.audio_sampling_rate``."""
    source, dest = Path(source), Path(dest)
    facts = published(source)
    config = _json(source / "config.json")
    if facts is None and not (config is not None and is_audio_config(config)):
        return None
    if facts is None and config.get("vision_config") is not None:   # Qwen2.5-Omni: a VLM with audio (vision.py)
        return None
    dest.mkdir(parents=True, exist_ok=True)
    if facts is not None and (vision is None or config is None):   # merge, export: the published files, copied
        for name in FILES:
            if (source / name).is_file() and source.resolve() != dest.resolve():
                shutil.copyfile(source / name, dest / name)
        return True
    kind = str(config.get("model_type") or "?")
    if kind not in FAMILIES:
        raise AudioModelError(f"model_type {kind!r} is an audio-language model llmpipe does not train yet; "
                               f"supported: {', '.join(FAMILIES)} (see docs/multimodal.md)")
    from transformers import AutoTokenizer, Qwen2AudioProcessor, WhisperFeatureExtractor

    from llmpipe.data.mm_audio import AUDIO_TOKENS, at_rate

    fe = WhisperFeatureExtractor.from_pretrained(str(source))
    if vision is not None:
        fe = at_rate(fe, int(vision.audio_sampling_rate))
    tok = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(str(source))
    bos, token, eos = AUDIO_TOKENS
    Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, audio_token=token, audio_bos_token=bos,
                        audio_eos_token=eos).save_pretrained(str(dest))
    info = {"plugin": PLUGIN, "model_type": kind, "audio_token": token, "audio_bos": bos, "audio_eos": eos,
            "audio_token_id": int(config.get("audio_token_index", tok.convert_tokens_to_ids(token))),
            "sampling_rate": int(fe.sampling_rate)}
    (dest / FACTS_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return True
