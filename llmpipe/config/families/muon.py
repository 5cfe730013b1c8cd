"""Muon family (``muon.*``): momentum orthogonalised by Newton-Schulz iterations for the 2-D hidden weights, AdamW
for the rest (torch.optim.Muon; llmpipe.training.optimizers)."""
from __future__ import annotations

from dataclasses import dataclass

from llmpipe.config.meta import param


@dataclass
class MuonConfig:
    use_muon: bool = param(
        False, "Use the Muon optimiser on the 2-D weights (not embeddings or the output head); the other trainable"
        " parameters use AdamW with train.adam_*.", seed="use_muon",
    )
    momentum: float = param(0.95, "Muon momentum.", ge=0.0, lt=1.0)
    nesterov: bool = param(True, "Nesterov momentum for Muon.")
    ns_steps: int = param(5, "Newton-Schulz iterations that orthogonalise each update.", ge=1, lt=100)
    adjust_lr: str = param(
        "match_rms_adamw", "Per-matrix learning rate: match_rms_adamw (0.2 x sqrt(max dim), updates of AdamW's size,"
        " so AdamW learning rates carry over) or original (sqrt(max(1, rows / cols)), Keller Jordan's).",
        choices=("match_rms_adamw", "original"),
    )
