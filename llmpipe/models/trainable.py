"""The model a training stage trains, and how it is saved.

build(): the run's base model (llmpipe.models.loading.load_causal_lm with training=True: quantized, RoPE-scaled,
embeddings resized, earlier adapters merged), then the fine-tuning method of train.finetuning_type:

- lora: the initial adapter of the adapt stage (or the resumed adapter it published), trainable;
- oft: fresh OFT adapters (llmpipe.models.oft), saved merged into the model;
- freeze: only some blocks/modules trainable (LLaMA Pro: new identity blocks inserted and trained);
- full: every weight trainable;

then the training patches (S²-Attn, upcast norms / LM-head output, mixture-of-depths conversion). Trainable
parameters are kept in fp32 unless train.pure_bf16 (mixed precision keeps fp32 master weights).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def _upcast_trainable(model) -> None:
    import torch

    for p in model.parameters():
        if p.requires_grad and p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.to(torch.float32)


def _apply_method(model, cfg: Any, adapter_dir: Path | None, log: Callable[[str], None]):
    from llmpipe.models import adapters, freeze, llama_pro

    ft = cfg.train.finetuning_type
    if ft == "lora":
        if cfg.model.use_unsloth and adapter_dir is not None:
            from llmpipe.models import unsloth

            return unsloth.attach_adapter(model, adapter_dir, cfg)
        if adapter_dir is not None:
            return adapters.load_trainable(model, adapter_dir, cfg)
        from peft import get_peft_model

        return get_peft_model(model, adapters.lora_config(cfg, model))
    if ft == "oft":
        from llmpipe.models import oft

        return oft.attach(model, cfg, log)
    if ft == "freeze":
        ids = llama_pro.prepare(model, cfg, log) if cfg.freeze.use_llama_pro else None
        info = freeze.apply_freeze(model, cfg, ids)
        log(f"freeze: {info['trainable_layers']} trainable block(s)")
        return model
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def build(source: str, cfg: Any, *, adapter_dir: Path | None = None, log: Callable[[str], None] = print):
    """The model to train (see the module docstring)."""
    from llmpipe.models import patches, quantization, shift_attn
    from llmpipe.models.loading import load_causal_lm

    model = load_causal_lm(source, cfg, training=True, log=log)
    if quantization.is_quantized(model):
        log(f"quantized: {quantization.describe(cfg)}")
    model = quantization.prepare_for_training(model, cfg)
    model = patches.apply_mixture_of_depths(model, cfg)
    if cfg.model.shift_attn:
        shift_attn.enable(model)
        log("S²-Attn: shifted group attention while training (group = 1/4 of the sequence)")
    model = _apply_method(model, cfg, adapter_dir, log)
    from llmpipe.models.vision import is_vlm_config

    if is_vlm_config(model.config):   # a VLM, or an audio-language model (its audio tower is the "vision tower")
        from llmpipe.models import vision_freeze

        vision_freeze.apply(model, cfg, log)   # the vision.freeze_* switches (full / freeze tuning)
        from llmpipe.models.frozen_towers import run_frozen_towers_without_grad

        for name in run_frozen_towers_without_grad(model):   # no autograd graph, recompute or backward through them
            log(f"frozen encoder {name} runs without autograd (none of its parameters trains)")
    if not cfg.train.pure_bf16 and not quantization.is_quantized(model):
        _upcast_trainable(model)
    patches.training_patches(model, cfg, log)
    if not cfg.model.disable_gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    counts = patches.count_params(model)
    share = 100.0 * counts["trainable_params"] / max(1, counts["all_params"])
    log(f"{cfg.train.finetuning_type}: {counts['trainable_params']:,} trainable of {counts['all_params']:,} "
        f"parameters ({share:.2f}%)")
    if cfg.model.print_param_status:
        for line in patches.param_status(model):
            log(line)
    return model


def save(model, out_dir: Path, cfg: Any, *, initial_adapter: Path | None = None, log: Callable[[str], None] = print):
    """Save what was trained: the adapter (LoRA; PiSSA converted with lora.pissa_convert) or the whole model."""
    from llmpipe.models import adapters

    if cfg.train.finetuning_type == "lora":
        what = adapters.save_adapter(model, out_dir, cfg, initial_adapter)
        if what != "adapter":
            log(f"saved: {what}")
        return
    if cfg.train.finetuning_type == "oft":
        from llmpipe.models import oft

        oft.save(model, out_dir, log)
        return
    model.save_pretrained(str(out_dir))
