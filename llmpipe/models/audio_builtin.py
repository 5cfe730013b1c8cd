"""A tiny Qwen2-Audio instance built offline from transformers' config classes (``Qwen2AudioForConditionalGeneration``).

Layout: an audio encoder (``audio_tower``: Whisper-like, 2 layers, width 64, 128 mel bins, a 2 s window =
200 mel frames), its projector (``multi_modal_projector``: one linear layer) and a Llama language model
(``language_model`` + ``lm_head``) of ``builtin:tiny``'s sizes with its tokenizer plus the three Qwen2-Audio tokens
``<|audio_bos|>``, ``<|AUDIO|>``, ``<|audio_eos|>``; randomly initialised with a fixed seed. Its processor is
transformers' ``Qwen2AudioProcessor`` (a WhisperFeatureExtractor at 16 kHz plus the tokenizer), which builds
without torchvision, so the folder reloads with ``AutoProcessor``.

``builtin:tiny-qwen2-audio`` (``model=tiny_qwen2_audio``) is this model as a built-in: ``ensure`` builds it once per
content hash (this file's spec and version, ``builtin:tiny``'s tokenizer hash, the transformers version) under
llmpipe.models.build_once (file lock, temp folder, manifest, atomic rename), into the folder of the other built-in
models, with ``llmpipe-mm.json`` (llmpipe.models.audio) next to the processor.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llmpipe.data.mm_audio import AUDIO_TOKENS

NAME = "builtin:tiny-qwen2-audio"
VERSION = "1"
MARKER_FILE = "llmpipe-builtin.json"   # llmpipe.models.loading loads the exact saved tokenizer

SPEC = {"audio": {"num_mel_bins": 128, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 128,
                  "d_model": 64, "max_source_positions": 100},
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2},
        "window_s": 2, "sampling_rate": 16000, "seed": 0}
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def feature_extractor(spec: dict = SPEC):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=spec["audio"]["num_mel_bins"], sampling_rate=spec["sampling_rate"],
                                   chunk_length=spec["window_s"], hop_length=160)


def tokenizer():
    """builtin:tiny's tokenizer with the Qwen2-Audio tokens."""
    from llmpipe.models.tiny import build_tokenizer

    tok = build_tokenizer("builtin:tiny")
    tok.add_special_tokens({"additional_special_tokens": list(AUDIO_TOKENS)})
    return tok


def build(out_dir: str | Path, spec: dict = SPEC):
    """Write the tiny Qwen2-Audio model, tokenizer and processor into ``out_dir``; returns (model, processor)."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
    )

    tok = tokenizer()
    text = dict(spec["text"], model_type="llama", vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_position_embeddings=512)
    cfg = Qwen2AudioConfig(audio_config=dict(spec["audio"], model_type="qwen2_audio_encoder"), text_config=text,
                           audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"), dtype="float32")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = Qwen2AudioForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    proc = Qwen2AudioProcessor(feature_extractor=feature_extractor(spec), tokenizer=tok, chat_template=CHAT_TEMPLATE)
    from llmpipe.models.build_once import save_quietly

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_quietly(model, out)
    proc.save_pretrained(out)
    return model, proc


def is_builtin(name: str) -> bool:
    return name == NAME


def content_hash(name: str = NAME) -> str:
    import transformers

    from llmpipe.models import tiny

    head = {"audio_builtin": VERSION, "name": name, "spec": SPEC, "template": CHAT_TEMPLATE, "tokens": AUDIO_TOKENS,
            "tokenizer": tiny.content_hash("builtin:tiny"), "transformers": transformers.__version__}
    return hashlib.sha256(json.dumps(head, sort_keys=True).encode()).hexdigest()[:16]


def folder_name(name: str = NAME) -> str:
    return f"{name.replace(':', '-')}-{content_hash(name)}"


def build_into(name: str, out_dir: str | Path) -> Path:
    """Save the built-in (weights, tokenizer, processor, llmpipe-mm.json, marker) into ``out_dir``."""
    from llmpipe.models.audio import publish

    out = Path(out_dir)
    _, proc = build(out)
    publish(out, out, tokenizer=proc.tokenizer)   # llmpipe-mm.json: the folder describes itself
    (out / MARKER_FILE).write_text(json.dumps({"name": name, "model_type": "qwen2_audio"}, indent=2) + "\n")
    return out


def ensure(name: str, cache_root: str | Path) -> Path:
    """The folder of the built-in ``name`` under the built-in models' folder, built on first use (seconds)."""
    from llmpipe.models import tiny
    from llmpipe.models.build_once import build_once

    manifest = {"name": name, "hash": content_hash(name), "audio_builtin": VERSION}
    return build_once(tiny.models_dir(cache_root), folder_name(name), lambda tmp: build_into(name, tmp), manifest)
