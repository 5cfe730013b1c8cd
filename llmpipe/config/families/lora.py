"""LoRA family (``lora.*``): low-rank adapters through PEFT."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import ListFlag, OptionalListFlag, param


@dataclass
class LoraConfig:
    rank: int = param(8, "Rank (intrinsic dimension) of the LoRA update matrices.", seed="lora_rank", ge=1)
    alpha: Optional[int] = param(
        None, "LoRA scaling numerator; unset means 2 x rank (the seed documents' default).",
        seed="lora_alpha", ge=1,
    )
    dropout: float = param(0.0, "Dropout applied to the LoRA input.", seed="lora_dropout", ge=0.0, lt=1.0)
    target: ListFlag = param(
        "all", "Modules that get LoRA, comma-separated; 'all' = every linear layer except the output head.",
        seed="lora_target", list_sep=",",
    )
    additional_target: OptionalListFlag = param(
        None, "Extra modules (comma-separated) trained in full and saved with the adapter.",
        seed="additional_target", list_sep=",",
    )
    loraplus_lr_ratio: Optional[float] = param(
        None, "LoRA+: learning-rate ratio lr_B / lr_A (unset = plain LoRA).", seed="loraplus_lr_ratio", gt=0.0,
    )
    loraplus_lr_embedding: float = param(
        1e-6, "LoRA+: learning rate of LoRA embedding layers.", seed="loraplus_lr_embedding", ge=0.0,
    )
    use_rslora: bool = param(False, "Rank-stabilised scaling (alpha / sqrt(rank)).", seed="use_rslora")
    use_dora: bool = param(False, "Weight-decomposed LoRA (DoRA).", seed="use_dora")
    pissa_init: bool = param(False, "Initialise the adapter with PiSSA (principal singular vectors).", seed="pissa_init")
    pissa_iter: int = param(
        16, "Fast-SVD iterations for PiSSA initialisation; -1 uses a full SVD.", seed="pissa_iter", ge=-1,
    )
    pissa_convert: bool = param(
        False, "Convert the trained PiSSA adapter into a plain LoRA adapter when saving.", seed="pissa_convert",
    )
    create_new_adapter: bool = param(
        False, "Start a fresh adapter on top of the loaded ones instead of resuming the last.",
        seed="create_new_adapter",
    )
