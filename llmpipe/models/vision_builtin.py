"""The built-in tiny vision-language model ``builtin:tiny_vl`` (``model=tiny_vl``), built offline.

Qwen2-VL layout (``Qwen2VLForConditionalGeneration``): a small vision tower (``model.visual``: patch embedding
and 2 blocks, randomly initialised with a fixed seed), its patch merger (the projector, ``model.visual.merger``)
and llmpipe's pre-trained ``builtin:tiny`` as the language model (``model.language_model`` + ``lm_head``): the
tiny model's tokenizer plus the four Qwen2-VL vision tokens, and its weights copied into the Qwen2-VL text
model. Llama and Qwen2-VL's text decoder compute the same function on text (rotate-half RoPE with the same
theta; M-RoPE gives text the same position on its three axes; the q/k/v biases Qwen2-VL adds are zero), so
the language model answers text exactly as ``builtin:tiny`` does before any vision training.

The folder holds config.json, model.safetensors, the tokenizer (with its chat template) and the image
processor's ``preprocessor_config.json`` (``Qwen2VLImageProcessorPil``: no torchvision needed). It is built
once per content hash (this file's builder version, the sizes, and ``builtin:tiny``'s own hash), under the
same file lock and atomic rename as the text built-ins (llmpipe.models.tiny, which is not changed).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

BUILDER_VERSION = "1"
BASE = "builtin:tiny"
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
IMAGE_PAD, VIDEO_PAD, VISION_START, VISION_END = "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"
# vision tower: 14-px patches merged 2x2 into one language-model token; the processor's own pixel bounds keep
# images between 56x56 (4 tokens) and 224x224 (64 tokens) unless vision.image_*_pixels pre-resize them.
SPECS: dict[str, dict] = {
    "builtin:tiny_vl": dict(vision=dict(depth=2, embed_dim=64, num_heads=4, mlp_ratio=2, patch_size=14,
                                        spatial_merge_size=2, temporal_patch_size=2),
                            image=dict(min_pixels=56 * 56, max_pixels=224 * 224),
                            mrope_section=[4, 6, 6], seed=0),
}
COMPLETE = "_COMPLETE"
MARKER = "llmpipe-builtin.json"   # tells llmpipe.models.loading to load the exact saved tokenizer


def is_builtin(name: str) -> bool:
    return isinstance(name, str) and name in SPECS


def content_hash(name: str) -> str:
    from llmpipe.models import tiny

    h = hashlib.sha256(json.dumps({"builder": BUILDER_VERSION, "name": name, "spec": SPECS[name],
                                   "tokens": VISION_TOKENS, "base": tiny.content_hash(BASE)},
                                  sort_keys=True).encode())
    return h.hexdigest()[:16]


def folder_name(name: str) -> str:
    return f"{name.replace(':', '-')}-{content_hash(name)}"


def image_processor(spec: dict):
    """The Qwen2-VL image processor (PIL backend) with the built-in's pixel bounds."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    v, im = spec["vision"], spec["image"]
    return Qwen2VLImageProcessorPil(size={"shortest_edge": im["min_pixels"], "longest_edge": im["max_pixels"]},
                                    patch_size=v["patch_size"], merge_size=v["spatial_merge_size"],
                                    temporal_patch_size=v["temporal_patch_size"])


def _copy_language_model(vl, lm) -> None:
    """builtin:tiny's weights into the Qwen2-VL text model (embeddings extended by the new tokens)."""
    import torch

    src = lm.state_dict()
    dst = vl.model.language_model
    with torch.no_grad():
        embed_key = ".".join(("model", "embed_tokens", "weight"))   # a module path, not a config path
        emb = src[embed_key]
        new = dst.embed_tokens.weight
        new[: emb.shape[0]] = emb
        new[emb.shape[0]:] = emb.mean(0, keepdim=True)   # vision tokens start at the mean embedding
        for k, v in src.items():
            if not k.startswith("model" + ".") or k == embed_key:
                continue
            dst.get_parameter(k.split(".", 1)[1]).copy_(v)
        for layer in dst.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.zero_()


def make_config(name: str, c, ids: dict[str, int], vocab_size: int):
    """The Qwen2VLConfig of ``name`` on the language model of config ``c`` (builtin:tiny's LlamaConfig), with the
    vision tokens' ids ``ids`` and a vocabulary of ``vocab_size``."""
    from transformers import Qwen2VLConfig

    spec = SPECS[name]
    text = dict(vocab_size=vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                num_key_value_heads=c.num_key_value_heads, max_position_embeddings=c.max_position_embeddings,
                rms_norm_eps=c.rms_norm_eps, hidden_act=c.hidden_act,
                rope_parameters={"rope_type": "default", "rope_theta": c.rope_parameters["rope_theta"],
                                 "mrope_section": list(spec["mrope_section"])},
                bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id)
    return Qwen2VLConfig(text_config=text, vision_config=dict(spec["vision"], hidden_size=c.hidden_size, in_channels=3),
                         image_token_id=ids[IMAGE_PAD], video_token_id=ids[VIDEO_PAD],
                         vision_start_token_id=ids[VISION_START], vision_end_token_id=ids[VISION_END],
                         tie_word_embeddings=bool(c.tie_word_embeddings), dtype="float32")


def config_dict(name: str) -> dict:
    """config.json's content for ``name`` without building it or builtin:tiny (what pre-flight reads,
    llmpipe.models.facts): builtin:tiny's LlamaConfig from its spec, its tokenizer's special tokens first (ids 0..3)
    and the vision tokens appended after its vocabulary."""
    from transformers import LlamaConfig

    from llmpipe.models import tiny

    spec = {k: v for k, v in tiny.SPECS[BASE].items() if k not in ("seed", "pretrain")}
    special = {t: i for i, t in enumerate(tiny.SPECIAL_TOKENS)}
    lm = LlamaConfig(**spec, bos_token_id=special[tiny.BOS], eos_token_id=special[tiny.EOS],
                     pad_token_id=special[tiny.PAD])
    ids = {t: spec["vocab_size"] + i for i, t in enumerate(VISION_TOKENS)}
    config = make_config(name, lm, ids, spec["vocab_size"] + len(VISION_TOKENS))
    return {**config.to_dict(), "architectures": ["Qwen2VLForConditionalGeneration"]}


def build_into(name: str, out_dir: str | Path, cache_root: str | Path) -> Path:
    import torch
    from transformers import (
        GenerationConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2VLForConditionalGeneration,
    )

    from llmpipe.models import tiny

    spec = SPECS[name]
    base = tiny.models_dir(cache_root) / tiny.folder_name(BASE)   # llmpipe.models.builtin built it first
    if not (base / tiny.COMPLETE).is_file():
        raise RuntimeError(f"{BASE} must be built before {name} (llmpipe.models.builtin.ensure_builtin does both)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = PreTrainedTokenizerFast.from_pretrained(str(base))
    tok.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS)})
    ids = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    lm = LlamaForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    c = lm.config
    cfg = make_config(name, c, ids, len(tok))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = Qwen2VLForConditionalGeneration(cfg)
    _copy_language_model(model, lm)
    model.tie_weights()
    model.generation_config = GenerationConfig(bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
                                               pad_token_id=c.pad_token_id)
    model.eval()
    from llmpipe.models.build_once import save_quietly

    save_quietly(model, out)
    tok.save_pretrained(out)
    image_processor(spec).save_pretrained(out)
    (out / MARKER).write_text(json.dumps({"name": name, "base": BASE}, indent=2) + "\n")
    return out


def ensure_builtin(name: str, cache_root: str | Path) -> Path:
    """The folder of ``name``, built on first use (llmpipe.models.build_once: lock, temp folder, atomic rename)."""
    from llmpipe.models import tiny
    from llmpipe.models.build_once import build_once

    manifest = {"name": name, "hash": content_hash(name), "builder": BUILDER_VERSION, "spec": SPECS[name]}
    return build_once(tiny.models_dir(cache_root), folder_name(name), lambda tmp: build_into(name, tmp, cache_root),
                      manifest)
