"""A tiny Qwen2-Audio built offline from transformers' config classes (``Qwen2AudioForConditionalGeneration``),
on llmpipe's pre-trained ``builtin:tiny``.

Layout: an audio encoder (``model.audio_tower``: Whisper-like, 2 layers, width 64, 128 mel bins, a 2 s window =
200 mel frames) and its projector (``model.multi_modal_projector``: one linear layer), both randomly initialised
with a fixed seed, and ``builtin:tiny`` as the language model (``model.language_model`` + ``lm_head``): its
tokenizer plus the three Qwen2-Audio tokens ``<|audio_bos|>``, ``<|AUDIO|>``, ``<|audio_eos|>`` (their embeddings
start at the mean embedding), its weights copied in (the LM head untied, a copy of the embeddings), so on text the
model computes exactly what ``builtin:tiny`` does. Its processor is transformers' ``Qwen2AudioProcessor`` (a
WhisperFeatureExtractor at 16 kHz plus the tokenizer), which builds without torchvision, so the folder reloads with
``AutoProcessor``.

``builtin:tiny-qwen2-audio`` (``model=tiny_qwen2_audio``) is this model as a built-in: ``ensure`` builds it once per
content hash (this file's spec and version, ``builtin:tiny``'s hash, the transformers version) under
llmpipe.models.build_once (file lock, temp folder, manifest, atomic rename), into the folder of the other built-in
models, with ``llmpipe-mm.json`` (llmpipe.models.audio) next to the processor. ``builtin:tiny`` is built first
(llmpipe.models.builtin.ensure_builtin does both).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llmpipe.data.mm_audio import AUDIO_TOKENS

NAME = "builtin:tiny-qwen2-audio"
BASE = "builtin:tiny"
VERSION = "2"
MARKER_FILE = "llmpipe-builtin.json"   # llmpipe.models.loading loads the exact saved tokenizer

SPEC = {"audio": {"num_mel_bins": 128, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 128,
                  "d_model": 64, "max_source_positions": 100},
        "window_s": 2, "sampling_rate": 16000, "seed": 0}
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def feature_extractor(spec: dict = SPEC):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=spec["audio"]["num_mel_bins"], sampling_rate=spec["sampling_rate"],
                                   chunk_length=spec["window_s"], hop_length=160)


def _copy_language_model(model, lm) -> None:
    """``lm``'s weights (a LlamaForCausalLM) into the Qwen2-Audio language model; the new tokens' rows start at the
    mean embedding, and the LM head is a copy of the embeddings where ``lm`` ties them."""
    import torch

    src = lm.state_dict()
    dst = model.model.language_model
    embed_key = ".".join(("model", "embed_tokens", "weight"))   # noqa: FLY002  (a module path, not a config path)
    with torch.no_grad():
        emb = src[embed_key]
        new = dst.embed_tokens.weight
        new[: emb.shape[0]] = emb
        new[emb.shape[0]:] = emb.mean(0, keepdim=True)
        for k, v in src.items():
            if k.startswith("model" + ".") and k != embed_key:
                dst.get_parameter(k.split(".", 1)[1]).copy_(v)
        head = new if lm.config.tie_word_embeddings else torch.cat([src["lm_head.weight"], new[emb.shape[0]:]])
        model.lm_head.weight.copy_(head)


def build(out_dir: str | Path, base: str | Path, spec: dict = SPEC):
    """Write the tiny Qwen2-Audio on the language model and tokenizer in folder ``base`` (builtin:tiny's) into
    ``out_dir``; returns (model, processor)."""
    import torch
    from transformers import (
        GenerationConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
    )

    from llmpipe.models.build_once import save_quietly

    tok = PreTrainedTokenizerFast.from_pretrained(str(base))
    tok.add_special_tokens({"additional_special_tokens": list(AUDIO_TOKENS)})
    lm = LlamaForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    c = lm.config
    text = {"model_type": "llama", "vocab_size": len(tok), "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
            "max_position_embeddings": c.max_position_embeddings, "rms_norm_eps": c.rms_norm_eps,
            "hidden_act": c.hidden_act, "rope_parameters": dict(c.rope_parameters), "tie_word_embeddings": False,
            "bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id, "pad_token_id": c.pad_token_id}
    cfg = Qwen2AudioConfig(audio_config=dict(spec["audio"], model_type="qwen2_audio_encoder"), text_config=text,
                           audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"), tie_word_embeddings=False,
                           dtype="float32")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = Qwen2AudioForConditionalGeneration(cfg).eval()
    _copy_language_model(model, lm)
    model.generation_config = GenerationConfig(bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
                                               pad_token_id=c.pad_token_id)
    proc = Qwen2AudioProcessor(feature_extractor=feature_extractor(spec), tokenizer=tok, chat_template=CHAT_TEMPLATE)
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
            "base": tiny.content_hash(BASE), "transformers": transformers.__version__}
    return hashlib.sha256(json.dumps(head, sort_keys=True).encode()).hexdigest()[:16]


def folder_name(name: str = NAME) -> str:
    return f"{name.replace(':', '-')}-{content_hash(name)}"


def build_into(name: str, out_dir: str | Path, cache_root: str | Path) -> Path:
    """Save the built-in (weights, tokenizer, processor, llmpipe-mm.json, marker) into ``out_dir``."""
    from llmpipe.models import tiny
    from llmpipe.models.audio import publish

    base = tiny.models_dir(cache_root) / tiny.folder_name(BASE)   # llmpipe.models.builtin built it first
    if not (base / tiny.COMPLETE).is_file():
        raise RuntimeError(f"{BASE} must be built before {name} (llmpipe.models.builtin.ensure_builtin does both)")
    out = Path(out_dir)
    _, proc = build(out, base)
    publish(out, out, tokenizer=proc.tokenizer)   # llmpipe-mm.json: the folder describes itself
    (out / MARKER_FILE).write_text(json.dumps({"name": name, "model_type": "qwen2_audio"}, indent=2) + "\n")
    return out


def ensure(name: str, cache_root: str | Path) -> Path:
    """The folder of the built-in ``name`` under the built-in models' folder, built on first use (seconds)."""
    from llmpipe.models import tiny
    from llmpipe.models.build_once import build_once

    manifest = {"name": name, "hash": content_hash(name), "audio_builtin": VERSION}
    return build_once(tiny.models_dir(cache_root), folder_name(name), lambda tmp: build_into(name, tmp, cache_root),
                      manifest)
