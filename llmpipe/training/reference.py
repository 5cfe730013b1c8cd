"""The reference model of dpo/kto/ppo (``pref.ref_model``, ``pref.ref_model_adapters``,
``pref.ref_model_quantization_bit``).

- unset, LoRA training: ``None`` — the policy with its adapter disabled is the reference (no second copy);
  TRL's DPO/KTO trainers keep a frozen copy of the initial adapter instead when it was resumed;
- unset, freeze/full training: a frozen copy of the run's base model, loaded with the same model options;
- set: that model (a folder, hub id or ``builtin:`` name) with its adapters merged (loaded on top when
  quantized), quantized to ``ref_model_quantization_bit``; its tokenizer must match the policy's, since
  the reference scores the policy's token ids.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from llmpipe.errors import UserError


class ReferenceModelError(UserError):
    """The reference model cannot be used (message says why and what to do)."""


def check_tokenizer(tokenizer, other, what: str, key: str) -> None:
    """The two tokenizers must map text to the same ids (same vocabulary and special tokens)."""
    if tokenizer.get_vocab() == other.get_vocab():
        return
    a, b = set(tokenizer.get_vocab()), set(other.get_vocab())
    sample = sorted(a ^ b)[:5]
    raise ReferenceModelError(
        f"{key}: the tokenizer of the {what} does not match the policy's ({len(a)} vs {len(b)} tokens; e.g. "
        f"{sample} differ), so it cannot score the policy's token ids. Use a model of the same family and "
        f"tokenizer, or leave {key} unset to use the policy's own base model")


def frozen(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _ref_cfg(cfg: Any, bit: int | None) -> Any:
    q = replace(cfg.quantization, bit=bit, method="bnb") if bit else replace(cfg.quantization, bit=None)
    return replace(cfg, quantization=q, model=replace(cfg.model, adapter_name_or_path=[]))


def load_reference(cfg: Any, source: str, tokenizer, cache_root: Path, log: Callable[[str], None] = print):
    """The reference model for policy base ``source`` (see the module docstring); None = adapter disabled."""
    from llmpipe.models.loading import load_causal_lm, load_tokenizer, resolve_source

    p = cfg.pref
    if not p.ref_model:
        if cfg.train.finetuning_type == "lora":
            log("reference: the policy with its adapter disabled (the frozen base)")
            return None
        log("reference: a frozen copy of the base model")
        return frozen(load_causal_lm(source, _ref_cfg(cfg, None), log=log))
    ref_source = resolve_source(str(p.ref_model), cache_root)
    check_tokenizer(tokenizer, load_tokenizer(ref_source, cfg.model), "reference model", "pref.ref_model")
    bit = p.ref_model_quantization_bit
    rcfg = _ref_cfg(cfg, bit)
    model = load_causal_lm(ref_source, rcfg, training=bool(bit), log=log)
    refs = list(p.ref_model_adapters)
    if refs:
        from llmpipe.models.adapters import load_adapter, merge_adapters

        if bit:
            if len(refs) > 1:
                raise ReferenceModelError("pref.ref_model_adapters: a quantized reference model takes one adapter "
                                          f"(got {len(refs)}); merge them first or drop pref.ref_model_quantization_bit")
            model = load_adapter(model, refs[0], rcfg, trainable=False)
        else:
            model = merge_adapters(model, refs, rcfg, log=log)
    log(f"reference: {p.ref_model}" + (f" + {', '.join(refs)}" if refs else "") + (f" ({bit}-bit)" if bit else ""))
    return frozen(model)
