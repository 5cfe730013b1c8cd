"""The multimodal measure's matched settings, in both tools' spellings (pure python; unit tested).

One table, ``SETTINGS``, holds every shared hyper-parameter once as llmpipe key -> (LF key, value);
``llmpipe_overrides`` and ``lf_config`` both derive from it, so the two runs cannot drift apart. What LF turns
on by itself is set explicitly on llmpipe's side (gradient checkpointing, reentrant; LoRA alpha 2 x rank;
vision tower and projector frozen). The template is LF's ``qwen2_vl`` in both (ChatML with the default
system "You are a helpful assistant." and Qwen2-VL's ``<|vision_start|>`` + ``<|image_pad|>`` x n +
``<|vision_end|>`` expansion); llmpipe's catalogue has it under the same name.
"""
from __future__ import annotations

from pathlib import Path

from bench.lfconfigs import to_yaml

DATASET = "vlm_bench"
BATCH = 8
STEPS = 30
# llmpipe key -> (LLaMA-Factory key, value)
SETTINGS: dict[str, tuple[str, object]] = {
    "data.template": ("template", "qwen2_vl"),
    "data.cutoff_len": ("cutoff_len", 128),
    "data.dataset": ("dataset", DATASET),
    "train.stage": ("stage", "sft"),
    "train.do_train": ("do_train", True),
    "train.finetuning_type": ("finetuning_type", "lora"),
    "lora.rank": ("lora_rank", 8),
    "lora.alpha": ("lora_alpha", 16),
    "lora.dropout": ("lora_dropout", 0.0),
    "lora.target": ("lora_target", "all"),
    "vision.image_max_pixels": ("image_max_pixels", 224 * 224),
    "vision.image_min_pixels": ("image_min_pixels", 32 * 32),
    "vision.freeze_vision_tower": ("freeze_vision_tower", True),
    "vision.freeze_multi_modal_projector": ("freeze_multi_modal_projector", True),
    "train.per_device_train_batch_size": ("per_device_train_batch_size", BATCH),
    "train.gradient_accumulation_steps": ("gradient_accumulation_steps", 1),
    "train.learning_rate": ("learning_rate", 1.0e-3),
    "train.max_steps": ("max_steps", STEPS),
    "train.lr_scheduler_type": ("lr_scheduler_type", "linear"),
    "train.warmup_steps": ("warmup_steps", 0),
    "train.optim": ("optim", "adamw_torch_fused"),
    "train.weight_decay": ("weight_decay", 0.0),
    "train.max_grad_norm": ("max_grad_norm", 1.0),
    "train.seed": ("seed", 42),
    "train.logging_steps": ("logging_steps", 1),
    "train.save_strategy": ("save_strategy", "no"),
    "train.bf16": ("bf16", False),
    "train.fp16": ("fp16", False),
    "model.disable_gradient_checkpointing": ("disable_gradient_checkpointing", False),
    "model.use_reentrant_gc": ("use_reentrant_gc", True),
}
# LF-only keys: bookkeeping that has no llmpipe counterpart (or is llmpipe's behaviour anyway)
LF_ONLY = {"packing": False, "overwrite_cache": True, "dataloader_num_workers": 0, "plot_loss": False,
               "overwrite_output_dir": True, "report_to": "none", "pure_bf16": False, "trust_remote_code": False,
               "include_effective_tokens_per_second": True}


def _override(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def llmpipe_overrides(model: Path, data: Path) -> list[str]:
    """llmpipe's command-line overrides for the matched run on ``model`` / ``data`` (folders)."""
    return [f"model.name_or_path={model}", f"data.dataset_dir={data}"] + [
        f"{k}={_override(v)}" for k, (_, v) in SETTINGS.items()]


def lf_config(model: Path, data: Path, out_dir: Path) -> dict:
    """LLaMA-Factory's YAML mapping for the same run."""
    return {"model_name_or_path": str(model), "dataset_dir": str(data), "output_dir": str(out_dir),
            **{lf: v for lf, v in SETTINGS.values()}, **LF_ONLY}


def write_lf_yaml(model: Path, data: Path, out_dir: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(to_yaml(lf_config(model, data, out_dir)))
    return dest
