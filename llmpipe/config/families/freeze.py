"""Freeze family (``freeze.*``): partial-parameter fine-tuning (``train.finetuning_type=freeze``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import param


@dataclass
class FreezeConfig:
    trainable_layers: int = param(
        2, "Trainable hidden layers: n > 0 = the last n layers, n < 0 = the first |n| layers.",
        seed="freeze_trainable_layers",
    )
    trainable_modules: str = param(
        "all", "Modules trained inside those layers, comma-separated; 'all' = every module.",
        seed="freeze_trainable_modules",
    )
    extra_modules: Optional[str] = param(
        None, "Modules outside the hidden layers also trained (e.g. embed_tokens,lm_head), comma-separated.",
        seed="freeze_extra_modules",
    )
    use_llama_pro: bool = param(
        False, "LLaMA Pro: train only the expanded (added) blocks.", seed="use_llama_pro",
    )
