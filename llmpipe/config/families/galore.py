"""GaLore family (``galore.*``): gradient low-rank projection optimiser (``galore=default``)."""
from __future__ import annotations

from dataclasses import dataclass

from llmpipe.config.meta import ListFlag, param


@dataclass
class GaloreConfig:
    use_galore: bool = param(False, "Use the GaLore optimiser (gradient low-rank projection).", seed="use_galore")
    target: ListFlag = param(
        "all", "Modules GaLore applies to, comma-separated; 'all' = every linear layer.", seed="galore_target",
        list_sep=",",
    )
    rank: int = param(16, "Rank of the projected gradients.", seed="galore_rank", ge=1)
    update_interval: int = param(
        200, "Steps between recomputations of the projection.", seed="galore_update_interval", ge=1,
    )
    scale: float = param(2.0, "GaLore scaling coefficient.", seed="galore_scale", gt=0.0, seed_default=0.25)
    proj_type: str = param(
        "std", "Projection type.", seed="galore_proj_type", choices=("std", "reverse_std", "right", "left", "full"),
    )
    layerwise: bool = param(
        False, "Layer-wise updates to save memory (needs gradient_accumulation_steps=1).", seed="galore_layerwise",
    )
