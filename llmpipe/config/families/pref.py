"""Preference family (``pref.*``): DPO-style losses (train.stage=dpo), KTO, and the reference model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import OptionalListFlag, param

# The six losses of the seed documents, then the other pairwise losses of TRL 1.16's DPOTrainer, by TRL's names.
LOSSES = (
    "sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo",
    "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down",
    "discopop", "sigmoid_norm",
)
# Losses trained without a reference model (TRL's ORPO and CPO trainers).
REFERENCE_FREE = ("orpo", "simpo")


@dataclass
class PrefConfig:
    beta: float = param(0.1, "Beta of the preference loss (strength of the KL/reference term).", seed="pref_beta", gt=0.0)
    ftx: float = param(
        0.0, "Weight of an added supervised (SFT) loss on the chosen responses.", seed="pref_ftx", ge=0.0,
    )
    loss: str = param(
        "sigmoid", "Pairwise loss: sigmoid (DPO), hinge, ipo, kto_pair, orpo and simpo (no reference model), and"
        " TRL's robust, exo_pair, nca_pair, bco_pair, sppo_hard, aot, aot_unpaired, apo_zero, apo_down, discopop,"
        " sigmoid_norm.", seed="pref_loss", choices=LOSSES,
    )
    dpo_label_smoothing: float = param(
        0.0, "Label smoothing of robust/conservative DPO (cDPO), in [0, 0.5].", seed="dpo_label_smoothing",
        ge=0.0, le=0.5,
    )
    simpo_gamma: float = param(0.5, "Target reward margin of the SimPO loss.", seed="simpo_gamma", ge=0.0)
    bco_weight: float = param(
        0.0, "Weight of an added BCO (binary classifier) loss in DPO training.", seed="pref_bco_weight", ge=0.0,
    )
    ld_alpha: Optional[float] = param(
        None, "LD-DPO alpha: weight of the verbose part of the responses' log-probabilities.", seed="ld_alpha",
        ge=0.0, le=1.0,
    )
    kto_chosen_weight: float = param(1.0, "KTO weight of desirable examples.", seed="kto_chosen_weight", gt=0.0)
    kto_rejected_weight: float = param(1.0, "KTO weight of undesirable examples.", seed="kto_rejected_weight", gt=0.0)
    precompute_reference: Optional[bool] = param(
        None, "Reference log-probs of dpo/kto in their own cached stage, computed once per reference model and data"
        " and shared by sweeps and re-runs: unset = when the run covers at least one epoch, true = always, false ="
        " inline in every step (llmpipe.config.rules.reference_plan).",
    )
    ref_model: Optional[str] = param(
        None, "Reference model for DPO/KTO/PPO (unset: the policy with adapters off, or a copy of the base).",
        seed="ref_model",
    )
    ref_model_adapters: OptionalListFlag = param(
        None, "Adapters of the reference model.", seed="ref_model_adapters", list_sep=",",
    )
    ref_model_quantization_bit: Optional[int] = param(
        None, "Quantize the reference model to this many bits (bitsandbytes).", seed="ref_model_quantization_bit",
        choices=(4, 8),
    )
