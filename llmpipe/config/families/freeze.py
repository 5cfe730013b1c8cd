"""Freeze family (``freeze.*``): partial-parameter fine-tuning (``train.finetuning_type=freeze``)."""
from __future__ import annotations

from dataclasses import dataclass

from llmpipe.config.meta import ListFlag, OptionalListFlag, param


@dataclass
class FreezeConfig:
    trainable_layers: int = param(
        2, "Trainable hidden layers: n > 0 = the last n layers, n < 0 = the first |n| layers.",
        seed="freeze_trainable_layers",
    )
    trainable_modules: ListFlag = param(
        "all", "Modules trained inside those layers, comma-separated; 'all' = every module.",
        seed="freeze_trainable_modules", list_sep=",",
    )
    extra_modules: OptionalListFlag = param(
        None, "Modules outside the hidden layers also trained (e.g. embed_tokens,lm_head), comma-separated.",
        seed="freeze_extra_modules", list_sep=",",
    )
    use_llama_pro: bool = param(
        False, "LLaMA Pro: train only the expanded (added) blocks.", seed="use_llama_pro",
    )
