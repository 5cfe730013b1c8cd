"""Loading base models and tokenizers: built-in, local folder, or hub id (offline-aware), honouring the
model family's loading options."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from llmpipe.errors import UserError
from llmpipe.models.hub import hub_kwargs


class ModelSourceError(UserError):
    """The model named by model.name_or_path cannot be found or loaded (message says what to do)."""


def resolve_source(name: str, cache_root: Path) -> str:
    """A local folder for built-in models and local paths; the hub id otherwise."""
    if name.startswith("builtin:"):
        from llmpipe.models.builtin import ensure_builtin   # cleans up after killed builds

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
    """The tokenizer, with the tokens the configuration adds (model.add_tokens / add_special_tokens /
    new_special_tokens_config)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from llmpipe.models.special_tokens import add_to_tokenizer

    kw = hub_kwargs(model_cfg)   # no use_fast: transformers 5 discards it (use_fast_tokenizer=false is refused)
    if model_cfg.split_special_tokens:
        kw["split_special_tokens"] = True
    if Path(source).is_dir() and (Path(source) / "llmpipe-builtin.json").exists():
        # built-in models: load the exact saved tokenizer (AutoTokenizer may rebuild some model types')
        tokenizer = PreTrainedTokenizerFast.from_pretrained(source)
    else:
        tokenizer = _from_pretrained(AutoTokenizer, source, **kw)
    add_to_tokenizer(tokenizer, model_cfg)
    return tokenizer


def torch_dtype(cfg: Any):
    """Dtype the weights are loaded in for training: bf16 with pure_bf16 or bf16 mixed precision, fp16 with fp16
    mixed precision (trainable parameters are then upcast to fp32), fp32 otherwise."""
    import torch

    t = cfg.train
    if t.pure_bf16 or t.bf16:
        return torch.bfloat16
    return torch.float16 if t.fp16 else torch.float32


def inference_dtype(cfg: Any):
    """infer.dtype as a torch dtype ("auto" = the checkpoint's own)."""
    import torch

    return {"auto": "auto", "float16": torch.float16, "bfloat16": torch.bfloat16,
            "float32": torch.float32}[cfg.infer.dtype]


ATTENTION = {"auto": None, "disabled": "eager", "sdpa": "sdpa", "fa2": "flash_attention_2", "fa3": "flash_attention_3"}


def _model_class(cfg: Any, config: Any = None):
    if cfg.model.mixture_of_depths == "load":
        try:
            from MoD import AutoMoDModelForCausalLM
        except ImportError:
            raise ModelSourceError("model.mixture_of_depths=load needs the MoD package: "
                                   "pip install 'mixture-of-depth>=1.1.6'") from None
        return AutoMoDModelForCausalLM
    from llmpipe.models.vision import model_class

    return model_class(config)   # a vision-language model loads with its image-text-to-text class


def placement_kwargs(cfg: Any, dtype, quantize: bool) -> dict[str, Any]:
    """from_pretrained keywords that quantize and place the weights: the quantizer's config and device map
    (quantization.*), and model.offload_folder for what an automatic device map cannot fit anywhere."""
    from llmpipe.models import quantization

    kw = dict(quantization.load_kwargs(cfg, dtype)) if quantize else {}
    if kw.get("device_map") == "auto":
        kw["offload_folder"] = cfg.model.offload_folder
    return kw


def load_causal_lm(source: str, cfg: Any, *, dtype=None, training: bool = False, quantize: bool | None = None,
                   log: Callable[[str], None] = print):
    """The run's base model: ``source`` loaded with the model family's options (dtype, attention, RoPE scaling,
    MoE loss), its embeddings resized for added tokens, and the adapters of model.adapter_name_or_path that are
    not resumed merged into it. ``training`` sets the config up for training (no KV cache, MoE router logits)
    and, like ``quantize=True`` (inference with quantization.bit, quantization.device_map), quantizes on the
    fly; merging loads unquantized."""
    import torch
    from transformers import AutoConfig

    from llmpipe.models import adapters, patches, quantization, special_tokens
    from llmpipe.models.moe_lora import keep_full_paths

    keep_full_paths()   # before any adapter is made or loaded on this model (llmpipe.models.moe_lora)
    dtype = dtype if dtype is not None else torch_dtype(cfg)
    quantize = training if quantize is None else quantize
    config = _from_pretrained(AutoConfig, source, **hub_kwargs(cfg.model))
    patches.patch_config(config, cfg, training=training, log=log)
    kw = hub_kwargs(cfg.model)
    kw.update(config=config, dtype=dtype)   # transformers 5 always loads low-memory (low_cpu_mem_usage is gone)
    attn = ATTENTION.get(cfg.model.flash_attn)
    if attn:
        kw["attn_implementation"] = attn
    kw.update(placement_kwargs(cfg, dtype, quantize))
    cls = _model_class(cfg, config)
    if training and cfg.model.use_unsloth:
        from llmpipe.models import unsloth

        model = unsloth.load(source, cfg, dtype)
    elif cfg.model.train_from_scratch:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.train.seed))   # every stage rebuilds the same random base
            model = cls.from_config(config, dtype=None if dtype == "auto" else dtype,
                                    **({"attn_implementation": attn} if attn else {}))
        log("weights initialised randomly (model.train_from_scratch)")
    else:
        model = _from_pretrained(cls, source, **kw)
    if quantize:
        model = quantization.quantize_loaded(model, cfg, dtype)
    if special_tokens.requested(cfg.model) != ([], []):
        special_tokens.resize_embeddings(model, load_tokenizer(source, cfg.model), cfg, log=log)
    to_merge, _ = adapters.split_adapters(cfg)
    return adapters.merge_adapters(model, to_merge, cfg, log=log)
