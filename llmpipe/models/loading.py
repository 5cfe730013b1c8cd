"""Loading base models and tokenizers: built-in, local folder, or hub id (offline-aware), honouring the
model family's loading options."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class ModelSourceError(Exception):
    """The model named by model.name_or_path cannot be found or loaded (message says what to do)."""


def resolve_source(name: str, cache_root: Path) -> str:
    """A local folder for built-in models and local paths; the hub id otherwise."""
    if name.startswith("builtin:"):
        from llmpipe.models.tiny import ensure_builtin

        return str(ensure_builtin(name, cache_root))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"model.name_or_path={name}: the folder has no config.json, so it is not a "
                                   "transformers model folder")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelSourceError(f"model.name_or_path={name}: no such folder, and it is not a hub id (org/name)")
    return name


def hub_kwargs(model_cfg: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {"revision": model_cfg.model_revision, "trust_remote_code": model_cfg.trust_remote_code}
    if model_cfg.cache_dir:
        kw["cache_dir"] = model_cfg.cache_dir
    token = os.environ.get("HF_TOKEN") or model_cfg.hf_hub_token
    if token:
        kw["token"] = token
    return kw


def _from_pretrained(loader, source: str, **kw):
    try:
        return loader.from_pretrained(source, **kw)
    except OSError as e:
        if Path(source).exists():
            raise
        raise ModelSourceError(
            f"model.name_or_path={source}: could not load it from the hub or the local cache ({str(e).splitlines()[0]}). "
            "On a machine without internet, download it elsewhere and pass the local folder.") from None


def load_tokenizer(source: str, model_cfg: Any):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    kw = hub_kwargs(model_cfg)
    kw["use_fast"] = model_cfg.use_fast_tokenizer
    if model_cfg.split_special_tokens:
        kw["split_special_tokens"] = True
    if Path(source).is_dir() and (Path(source) / "llmpipe-builtin.json").exists():
        # built-in models: load the exact saved tokenizer (AutoTokenizer may rebuild some model types')
        return PreTrainedTokenizerFast.from_pretrained(source)
    return _from_pretrained(AutoTokenizer, source, **kw)


def torch_dtype(cfg: Any):
    import torch

    if cfg.train.pure_bf16:
        return torch.bfloat16
    return torch.float32 if not (cfg.train.bf16 or cfg.train.fp16) else "auto"


def load_causal_lm(source: str, cfg: Any, *, dtype=None):
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = hub_kwargs(cfg.model)
    kw["dtype"] = dtype if dtype is not None else torch_dtype(cfg)
    kw["low_cpu_mem_usage"] = cfg.model.low_cpu_mem_usage
    attn = {"auto": None, "disabled": "eager", "sdpa": "sdpa", "fa2": "flash_attention_2",
            "fa3": "flash_attention_3"}.get(cfg.model.flash_attn)
    if attn:
        kw["attn_implementation"] = attn
    if cfg.model.train_from_scratch:
        config = _from_pretrained(AutoConfig, source, **hub_kwargs(cfg.model))
        return AutoModelForCausalLM.from_config(config, dtype=kw["dtype"] if kw["dtype"] != "auto" else None)
    return _from_pretrained(AutoModelForCausalLM, source, **kw)
