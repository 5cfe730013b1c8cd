"""The architecture zoo: tiny random instances of the architectures users fine-tune (``builtin:tiny-qwen3``,
``builtin:tiny-deepseek-v3``, ...), built offline from transformers' own config classes.

Each one has the built-in tiny model's tokenizer (``builtin:tiny-random``'s: the same BPE trained on the
bundled corpus, chatml chat template), 2 decoder blocks, hidden size 64 and, for mixture-of-experts models,
4 experts of which 2 are routed per token. The weights are random with a fixed seed: the models know nothing,
but every code path that depends on the architecture (module names, fused projections, MLA attention, routed
experts, post-norms, sliding windows, tied heads) is the real one of transformers.

``ensure(name, cache_root)`` builds a model once per content hash, atomically and under a file lock, into the
same folder as the other built-in models. The folder carries ``llmpipe-builtin.json``, so llmpipe loads the
saved tokenizer as it is (some model types make AutoTokenizer rebuild it).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llmpipe.models import tiny

ZOO_VERSION = "1"
MARKER_FILE = "llmpipe-builtin.json"
TOKENIZER_OF = "builtin:tiny-random"   # the zoo shares this built-in model's tokenizer

_COMMON = {"vocab_size": 2048, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 96, "max_position_embeddings": 1024}
_MOE = {"num_experts_per_tok": 2, "moe_intermediate_size": 40}
_WINDOWED = {"layer_types": ["sliding_attention", "full_attention"], "sliding_window": 64}

# name -> (transformers model_type, config values on top of _COMMON); head_dim is set where the config class's
# default (128 or 256) would not fit hidden_size / num_attention_heads
SPECS: dict[str, tuple[str, dict]] = {
    "builtin:tiny-llama3": ("llama", {"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}),
    "builtin:tiny-qwen2": ("qwen2", {}),
    "builtin:tiny-qwen3": ("qwen3", {"head_dim": 16}),
    "builtin:tiny-qwen3-moe": ("qwen3_moe", dict(_MOE, head_dim=16, num_experts=4, router_aux_loss_coef=0.001)),
    "builtin:tiny-mistral": ("mistral", {"head_dim": 16}),
    "builtin:tiny-mixtral": ("mixtral", {"head_dim": 16, "num_local_experts": 4, "num_experts_per_tok": 2,
                                         "router_aux_loss_coef": 0.02}),
    "builtin:tiny-gemma2": ("gemma2", dict(_WINDOWED, head_dim=16, query_pre_attn_scalar=16)),
    "builtin:tiny-gemma3": ("gemma3_text", dict(_WINDOWED, head_dim=16, query_pre_attn_scalar=16)),
    "builtin:tiny-phi3": ("phi3", {}),
    "builtin:tiny-deepseek-v3": ("deepseek_v3", dict(_MOE, q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8,
                                                     qk_nope_head_dim=8, v_head_dim=16, head_dim=8,
                                                     n_routed_experts=4, n_shared_experts=1, first_k_dense_replace=1,
                                                     n_group=1, topk_group=1)),
    "builtin:tiny-glm4": ("glm4", {"head_dim": 16}),
    "builtin:tiny-olmo2": ("olmo2", {}),
    "builtin:tiny-gpt-oss": ("gpt_oss", dict(_WINDOWED, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
                                             router_aux_loss_coef=0.9)),
}
SEED = 0


def is_zoo(name: str) -> bool:
    return isinstance(name, str) and name in SPECS


def names() -> list[str]:
    return sorted(SPECS)


def token_ids() -> dict[str, int]:
    """bos/eos/pad ids of the shared tokenizer (its special tokens come first, in tiny.SPECIAL_TOKENS order)."""
    index = {t: i for i, t in enumerate(tiny.SPECIAL_TOKENS)}
    return {"bos_token_id": index[tiny.BOS], "eos_token_id": index[tiny.EOS], "pad_token_id": index[tiny.PAD]}


def config_values(name: str) -> tuple[str, dict]:
    """(model_type, the keyword arguments of its config class) of zoo model ``name``."""
    if not is_zoo(name):
        raise ValueError(f"model.name_or_path={name!r} is not a zoo model; zoo: {', '.join(names())}")
    model_type, extra = SPECS[name]
    return model_type, {**_COMMON, **token_ids(), **extra}


def make_config(name: str):
    """The transformers config of zoo model ``name`` (no weights)."""
    from transformers import AutoConfig

    model_type, values = config_values(name)
    return AutoConfig.for_model(model_type, **values)


def config_dict(name: str) -> dict:
    """config.json's content for zoo model ``name`` (what pre-flight reads without building it)."""
    return make_config(name).to_dict()


def content_hash(name: str) -> str:
    """sha256 (16 hex) over the zoo version, the spec, transformers' version (it initialises the weights) and
    the shared tokenizer's own content hash."""
    import transformers

    head = {"zoo": ZOO_VERSION, "name": name, "spec": config_values(name), "seed": SEED,
            "transformers": transformers.__version__, "tokenizer": tiny.content_hash(TOKENIZER_OF)}
    return hashlib.sha256(json.dumps(head, sort_keys=True).encode()).hexdigest()[:16]


def folder_name(name: str) -> str:
    return f"{name.replace(':', '-')}-{content_hash(name)}"


def build_model(name: str):
    """A fresh random instance of zoo model ``name`` (fixed seed), in memory, float32."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    config = make_config(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    ids = token_ids()
    model.generation_config = GenerationConfig(bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"],
                                               pad_token_id=ids["pad_token_id"])
    return model.eval()


def build_into(name: str, out_dir: str | Path) -> Path:
    """Save zoo model ``name`` with the shared tokenizer into ``out_dir`` (no caching, no locking)."""
    from llmpipe.models.build_once import save_quietly

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_quietly(build_model(name), out)
    tiny.build_tokenizer(TOKENIZER_OF).save_pretrained(out)
    (out / MARKER_FILE).write_text(json.dumps({"name": name, "model_type": SPECS[name][0]}, indent=2) + "\n")
    return out


def ensure(name: str, cache_root: str | Path) -> Path:
    """The folder of zoo model ``name`` under the built-in models' folder, built on first use (a temp folder
    moved into place, under a file lock; a leftover without the completion marker is rebuilt)."""
    from llmpipe.models.build_once import build_once

    manifest = {"name": name, "hash": content_hash(name), "zoo": ZOO_VERSION}
    return build_once(tiny.models_dir(cache_root), folder_name(name), lambda tmp: build_into(name, tmp), manifest)

