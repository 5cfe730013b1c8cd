"""APOLLO family (``apollo.*``): approximated gradient scaling for memory-efficient full-parameter training
(apollo-torch's APOLLOAdamW; llmpipe.training.optimizers)."""
from __future__ import annotations

from dataclasses import dataclass

from llmpipe.config.meta import ListFlag, param


@dataclass
class ApolloConfig:
    use_apollo: bool = param(False, "Use the APOLLO optimiser (Adam moments of randomly projected gradients, used"
                             " to scale the raw gradient channel- or tensor-wise).", seed="use_apollo")
    target: ListFlag = param(
        "all", "Modules APOLLO applies to, comma-separated; 'all' = every linear layer but the output head.",
        seed="apollo_target", list_sep=",",
    )
    rank: int = param(16, "Rank of the projected gradients.", seed="apollo_rank", ge=1)
    update_interval: int = param(
        200, "Steps between redraws of the projection.", seed="apollo_update_interval", ge=1,
    )
    scale: float = param(32.0, "APOLLO scaling coefficient (its square root multiplies the scaled gradient).",
                         seed="apollo_scale", gt=0.0)
    proj: str = param("random", "Low-rank projection: random (Gaussian) or svd.", seed="apollo_proj",
                      choices=("random", "svd"))
    proj_type: str = param("std", "Which side of the gradient is projected: std (the shorter), right or left.",
                           seed="apollo_proj_type", choices=("std", "right", "left"))
    scale_type: str = param("channel", "Gradient scaling per channel or for the whole tensor.",
                            seed="apollo_scale_type", choices=("channel", "tensor"))
    layerwise: bool = param(
        False, "Layer-wise updates to save memory (needs gradient_accumulation_steps=1 and one process).",
        seed="apollo_layerwise",
    )
    scale_front: bool = param(False, "Apply the norm-growth limiter before the gradient scaling, not after.",
                              seed="apollo_scale_front")
