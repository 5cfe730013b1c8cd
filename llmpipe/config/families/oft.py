"""OFT family (``oft.*``): orthogonal fine-tuning adapters through PEFT (``train.finetuning_type=oft``)."""
from __future__ import annotations

from dataclasses import dataclass

from llmpipe.config.meta import ListFlag, param


@dataclass
class OftConfig:
    rank: int = param(
        0, "Number of orthogonal blocks per adapted layer (PEFT's r); 0 = derived from block_size. Set exactly one"
        " of rank and block_size.", seed="oft_rank", ge=0,
    )
    block_size: int = param(
        32, "Size of each orthogonal block (the layer's input size must be a multiple); 0 = derived from rank.",
        seed="oft_block_size", ge=0,
    )
    target: ListFlag = param(
        "all", "Modules that get OFT, comma-separated; 'all' = every linear layer except the output head.",
        seed="oft_target", list_sep=",",
    )
    module_dropout: float = param(
        0.0, "Probability of dropping a whole orthogonal block while training (multiplicative dropout).",
        seed="module_dropout", ge=0.0, lt=1.0,
    )
