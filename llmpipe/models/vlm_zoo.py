"""The vision-language zoo: tiny random instances of the image-text families beyond ``builtin:tiny_vl``
(``builtin:tiny-qwen2.5-vl``, ``builtin:tiny-qwen3-vl``, ``builtin:tiny-llava``, ``builtin:tiny-gemma3-vl``,
``builtin:tiny-llava-next``, ``builtin:tiny-llava-next-video``, ``builtin:tiny-internvl``,
``builtin:tiny-idefics3``, ``builtin:tiny-qwen2-5-omni``), built offline from transformers' own config classes.
``builtin:tiny-qwen2-5-omni`` is Qwen2.5-Omni's thinker (``Qwen2_5OmniThinkerForConditionalGeneration``: a vision
tower, an audio tower and the language model); its WhisperFeatureExtractor's settings travel in ``llmpipe-mm.json``
(llmpipe.models.vision, llmpipe.data.mm_omni), since ``preprocessor_config.json`` holds the image processor.

Each one has the architecture zoo's tokenizer (``builtin:tiny-random``'s BPE, chatml chat template) plus the
family's image tokens, a 2-block language model of width 64 and a 2-block vision tower of width 32, with random
weights drawn under a fixed seed. Its image processor is the family's PIL-backend class (no torchvision needed),
sized so that one image is a handful of tokens, and it is saved as ``preprocessor_config.json`` next to the
weights (with ``llmpipe-mm.json``, and ``processor_config.json`` where AutoProcessor can rebuild the processor).
``builtin:tiny-smolvlm`` (SmolVLM) carries SmolVLM's own chat template (transformers' SmolVLM chat template:
``User:`` / ``Assistant:`` turns ending in ``<end_of_utterance>``, its EOS) and the ``<row_i_col_j>`` tile tokens,
since LLaMA-Factory has no SmolVLM template or plugin.
The models know nothing; every code path that depends on the family (module names, placeholder
expansion, the extra forward inputs, the processor) is transformers' real one.

``ensure(name, cache_root)`` builds a model once per content hash under llmpipe.models.build_once (file lock,
temp folder, manifest, atomic rename), into the folder of the other built-in models.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llmpipe.models import tiny

VERSION = "2"
MARKER_FILE = "llmpipe-builtin.json"
TOKENIZER_OF = "builtin:tiny-random"
SEED = 0
_TEXT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 96, "max_position_embeddings": 1024}
_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
_QWEN_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
# Qwen2.5-Omni's thinker: its processor reads every one of these from the tokenizer (named attributes)
_OMNI_NAMED = {"image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "audio_token": "<|AUDIO|>",
               "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
               "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"}
OMNI_AUDIO = {"num_mel_bins": 128, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 64,
              "d_model": 32, "max_source_positions": 200, "n_window": 50, "output_dim": 64}

# name -> (model_type, the family's image tokens added to the tokenizer, named tokenizer attributes)
SPECS: dict[str, tuple[str, tuple[str, ...], dict[str, str]]] = {
    "builtin:tiny-qwen2.5-vl": ("qwen2_5_vl", _QWEN_TOKENS, {}),
    "builtin:tiny-qwen3-vl": ("qwen3_vl", _QWEN_TOKENS, {}),
    "builtin:tiny-llava": ("llava", ("<image>",), {"image_token": "<image>"}),
    "builtin:tiny-gemma3-vl": ("gemma3", ("<start_of_image>", "<end_of_image>", "<image_soft_token>",
                                          "<start_of_turn>", "<end_of_turn>"),   # + LF's gemma3 template's turns
                               {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                "image_token": "<image_soft_token>"}),
    "builtin:tiny-llava-next": ("llava_next", ("<image>",), {"image_token": "<image>"}),
    "builtin:tiny-llava-next-video": ("llava_next_video", ("<image>", "<video>"),
                                      {"image_token": "<image>", "video_token": "<video>"}),
    "builtin:tiny-internvl": ("internvl", ("<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
                              {"start_image_token": "<img>", "end_image_token": "</img>",
                               "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}),
    "builtin:tiny-idefics3": ("idefics3", ("<fake_token_around_image>", "<image>", "<end_of_utterance>",
                                           "<global-img>"), {}),
    "builtin:tiny-qwen2-5-omni": ("qwen2_5_omni_thinker", tuple(_OMNI_NAMED.values()), _OMNI_NAMED),
    "builtin:tiny-smolvlm": ("smolvlm", ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>",
                                         *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))), {}),
}
# the family's own chat format where LLaMA-Factory has no template for it: name -> (chat template, EOS token)
OWN_CHAT = {"builtin:tiny-smolvlm": ("smolvlm", "<end_of_utterance>")}
PINPOINTS = [[56, 56], [56, 112], [112, 56], [112, 112]]   # LLaVA-NeXT's any-resolution grid (tiles of 56 px)


def is_vlm_zoo(name: str) -> bool:
    return isinstance(name, str) and name in SPECS


def names() -> list[str]:
    return list(SPECS)


def model_type(name: str) -> str:
    return SPECS[name][0]


def tokenizer(name: str):
    """The zoo tokenizer with the family's image tokens, each a single special token, and the named attributes
    (``boi_token`` ...) some transformers processors read from the tokenizer."""
    from transformers import PreTrainedTokenizerFast

    _, added, named = SPECS[name]
    base = tiny.build_tokenizer(TOKENIZER_OF)
    own = OWN_CHAT.get(name)
    tok = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, bos_token=base.bos_token,
                                  eos_token=own[1] if own else base.eos_token, pad_token=base.pad_token, unk_token=None,
                                  model_max_length=base.model_max_length, padding_side="right", **named)
    tok.chat_template = _own_template(own[0]) if own else base.chat_template
    tok.add_special_tokens({"additional_special_tokens": list(added)})
    return tok


class _Ids:
    """The zoo tokenizer's size and ids, known without training it: builtin:tiny-random's vocabulary (its special
    tokens first), then each new token (the family's EOS, then its image tokens) appended in order. What
    :func:`config_dict` needs; tests/integration/test_vlm_families.py checks it against the built folders."""

    def __init__(self, name: str):
        size = tiny.SPECS[TOKENIZER_OF]["vocab_size"]
        self.ids = {t: i for i, t in enumerate(tiny.SPECIAL_TOKENS)}
        own = OWN_CHAT.get(name)
        for t in ([own[1]] if own else []) + list(SPECS[name][1]):
            self.ids.setdefault(t, size + len(self.ids) - len(tiny.SPECIAL_TOKENS))
        self.size = size + len(self.ids) - len(tiny.SPECIAL_TOKENS)
        self.bos_token_id, self.pad_token_id = self.ids[tiny.BOS], self.ids[tiny.PAD]
        self.eos_token_id = self.ids[own[1] if own else tiny.EOS]

    def __len__(self) -> int:
        return self.size

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.ids[token]


def config_dict(name: str) -> dict:
    """config.json's content for ``name`` without building it (what pre-flight reads: llmpipe.models.facts)."""
    from transformers.models.auto import modeling_auto

    classes = modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    return {**make_config(name, _Ids(name)).to_dict(), "architectures": [classes[model_type(name)]]}


def _own_template(kind: str) -> str:
    """A family's own chat template, as transformers ships it (SmolVLM: the one its processor uses, which also
    renders plain-text message contents)."""
    if kind == "smolvlm":
        from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

        return DEFAULT_CHAT_TEMPLATE
    raise ValueError(f"no own chat template for {kind}")


def _ids(tok, *tokens: str) -> list[int]:
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def make_config(name: str, tok):
    """The transformers config of ``name`` for tokenizer ``tok`` (its image-token ids)."""
    from transformers import AutoConfig

    kind = model_type(name)
    ends = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    text = dict(_TEXT, vocab_size=len(tok), **ends)
    if kind in ("qwen2_5_vl", "qwen3_vl"):
        start, end, image, video = _ids(tok, *_QWEN_TOKENS)
        ids = {"image_token_id": image, "video_token_id": video, "vision_start_token_id": start,
               "vision_end_token_id": end}
        if kind == "qwen2_5_vl":
            text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]}
            vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "out_hidden_size": 64,
                      "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                      "fullatt_block_indexes": [1]}
        else:
            text.update(head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                      "mrope_section": [4, 2, 2], "mrope_interleaved": True})
            vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "out_hidden_size": 64,
                      "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "num_position_embeddings": 64, "deepstack_visual_indexes": [0]}
        return AutoConfig.for_model(kind, text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    if kind == "qwen2_5_omni_thinker":   # vision_start_token_id: no declared field, but get_rope_index reads it
        named = SPECS[name][2]
        image, video, audio, vbos, _, abos, aeos = _ids(tok, *named.values())
        text.update(model_type="qwen2_5_omni_text",
                    rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]})
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "out_hidden_size": 64,
                  "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                  "fullatt_block_indexes": [1]}
        return AutoConfig.for_model(kind, text_config=text, vision_config=vision, audio_config=OMNI_AUDIO,
                                    image_token_index=image, video_token_index=video, audio_token_index=audio,
                                    audio_start_token_id=abos, audio_end_token_id=aeos, vision_start_token_id=vbos,
                                    tie_word_embeddings=False)
    if kind in ("llava", "llava_next", "llava_next_video"):
        extra = {"image_grid_pinpoints": PINPOINTS} if kind != "llava" else {}
        if kind == "llava_next_video":   # a frame of 56 px is 4x4 patches, pooled by 2 -> 4 tokens
            extra.update(video_token_index=_ids(tok, "<video>")[0], spatial_pool_stride=2)
        return AutoConfig.for_model(kind, text_config=dict(text, model_type="llama"),
                                    vision_config=dict(_TOWER, model_type="clip_vision_model", image_size=56,
                                                       patch_size=14, projection_dim=32),
                                    image_token_index=_ids(tok, "<image>")[0], vision_feature_layer=-1,
                                    vision_feature_select_strategy="default", **extra)
    if kind == "gemma3":
        boi, eoi, soft = _ids(tok, *SPECS[name][1][:3])
        return AutoConfig.for_model(kind, text_config=dict(text, model_type="gemma3_text", head_dim=16,
                                                           query_pre_attn_scalar=16, sliding_window=64,
                                                           layer_types=["sliding_attention", "full_attention"]),
                                    vision_config=dict(_TOWER, model_type="siglip_vision_model", image_size=56,
                                                       patch_size=14),
                                    mm_tokens_per_image=4, boi_token_index=boi, eoi_token_index=eoi,
                                    image_token_index=soft)
    if kind == "internvl":
        return AutoConfig.for_model(kind, text_config=dict(text, model_type="qwen2"),
                                    vision_config=dict(_TOWER, image_size=[56, 56], patch_size=[14, 14]),
                                    image_token_id=_ids(tok, "<IMG_CONTEXT>")[0], downsample_ratio=0.5,
                                    image_seq_length=4, vision_feature_layer=-1,
                                    vision_feature_select_strategy="default")
    if kind in ("idefics3", "smolvlm"):   # language model: model.text_model; 56-px tiles of 4x4 patches, shuffled 2x2 -> 4
        return AutoConfig.for_model(kind, text_config=dict(text, model_type="llama"),
                                    vision_config=dict(_TOWER, image_size=56, patch_size=14),
                                    image_token_id=_ids(tok, "<image>")[0], scale_factor=2,
                                    tie_word_embeddings=False)
    raise ValueError(f"no tiny builder for {kind}")


def image_processor(name: str):
    """The family's image processor (PIL backend), sized for 56-px inputs."""
    kind = model_type(name)
    if kind in ("qwen2_5_vl", "qwen2_5_omni_thinker"):
        from transformers import Qwen2VLImageProcessorPil

        return Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112})
    if kind == "qwen3_vl":   # patch 16 (a patch-14 processor breaks the forward), mean/std 0.5 as the checkpoints
        from transformers import Qwen2VLImageProcessorPil

        return Qwen2VLImageProcessorPil(size={"shortest_edge": 64 * 64, "longest_edge": 128 * 128}, patch_size=16,
                                        image_mean=[0.5] * 3, image_std=[0.5] * 3)
    if kind == "llava":
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    if kind in ("llava_next", "llava_next_video"):   # LLaVA-NeXT-Video's frames go through it too (mm_video_layouts)
        from transformers import LlavaNextImageProcessorPil

        return LlavaNextImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56},
                                          image_grid_pinpoints=PINPOINTS)
    if kind == "gemma3":
        from transformers import Gemma3ImageProcessorPil

        return Gemma3ImageProcessorPil(size={"height": 56, "width": 56}, pan_and_scan_min_crop_size=28,
                                       pan_and_scan_max_num_crops=4, pan_and_scan_min_ratio_to_activate=1.2)
    if kind == "internvl":
        from transformers import GotOcr2ImageProcessorPil

        return GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, crop_to_patches=False, min_patches=1,
                                        max_patches=4)
    if kind == "idefics3":   # images up to 112 px, split into 56-px tiles plus the whole image
        from transformers import Idefics3ImageProcessorPil

        return Idefics3ImageProcessorPil(size={"longest_edge": 112}, max_image_size={"longest_edge": 56},
                                         do_image_splitting=True)
    if kind == "smolvlm":   # as Idefics3: 56-px tiles (image splitting on, as SmolVLM's checkpoints) plus the whole image
        from transformers import SmolVLMImageProcessorPil

        return SmolVLMImageProcessorPil(size={"longest_edge": 112}, max_image_size={"longest_edge": 56},
                                        do_image_splitting=True)
    raise ValueError(f"no image processor for {kind}")


def content_hash(name: str) -> str:
    import transformers

    head = {"vlm_zoo": VERSION, "name": name, "spec": SPECS[name], "seed": SEED, "text": _TEXT, "tower": _TOWER,
            "transformers": transformers.__version__, "tokenizer": tiny.content_hash(TOKENIZER_OF)}
    if model_type(name) == "qwen2_5_omni_thinker":
        from llmpipe.data.mm_omni import (
            FEATURES,  # its feature extractor (llmpipe-mm.json)
        )

        head.update(audio=OMNI_AUDIO, features=FEATURES)
    return hashlib.sha256(json.dumps(head, sort_keys=True).encode()).hexdigest()[:16]


def folder_name(name: str) -> str:
    return f"{name.replace(':', '-')}-{content_hash(name)}"


def build_model(name: str, tok):
    """A fresh random instance (fixed seed, float32, eval mode) of ``name`` for tokenizer ``tok``."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    config = make_config(name, tok)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    return model.eval()


def build_into(name: str, out_dir: str | Path) -> Path:
    """Save ``name`` (weights, tokenizer, image processor) into ``out_dir`` (no caching, no locking)."""
    from llmpipe.models.build_once import save_quietly

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tokenizer(name)
    save_quietly(build_model(name, tok), out)
    tok.save_pretrained(out)
    image_processor(name).save_pretrained(out)
    from llmpipe.models.vision import publish_processor

    publish_processor(out, out, tokenizer=tok)   # llmpipe-mm.json (+ processor_config.json): the folder describes itself
    (out / MARKER_FILE).write_text(json.dumps({"name": name, "model_type": model_type(name)}, indent=2) + "\n")
    return out


def ensure(name: str, cache_root: str | Path) -> Path:
    """The folder of ``name`` under the built-in models' folder, built on first use."""
    from llmpipe.models.build_once import build_once

    manifest = {"name": name, "hash": content_hash(name), "vlm_zoo": VERSION}
    return build_once(tiny.models_dir(cache_root), folder_name(name), lambda tmp: build_into(name, tmp), manifest)
