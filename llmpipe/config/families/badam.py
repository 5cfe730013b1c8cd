"""BAdam family (``badam.*``): block-coordinate Adam (``badam=layer``/``badam=ratio``), plus Adam-mini."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import param


@dataclass
class BadamConfig:
    use_badam: bool = param(False, "Use the BAdam optimiser.", seed="use_badam")
    mode: str = param("layer", "Layer-wise or ratio-wise BAdam.", seed="badam_mode", choices=("layer", "ratio"))
    start_block: Optional[int] = param(
        None, "First block updated by layer-wise BAdam (unset = by switch_mode).", seed="badam_start_block", ge=0,
    )
    switch_mode: str = param(
        "ascending", "How layer-wise BAdam picks the next block.", seed="badam_switch_mode",
        choices=("ascending", "descending", "random", "fixed"),
    )
    switch_interval: int = param(
        50, "Steps between block switches of layer-wise BAdam; -1 = never switch.", seed="badam_switch_interval",
        ge=-1,
    )
    update_ratio: float = param(
        0.05, "Fraction of parameters updated by ratio-wise BAdam.", seed="badam_update_ratio", gt=0.0, le=1.0,
    )
    mask_mode: str = param(
        "adjacent", "Ratio-wise mask: adjacent (contiguous) or scatter (random) trainable parameters.",
        seed="badam_mask_mode", choices=("adjacent", "scatter"),
    )
    verbose: int = param(
        0, "BAdam verbosity: 0 silent, 1 block names, 2 trainable parameters.", seed="badam_verbose",
        choices=(0, 1, 2), volatile=True,
    )
    use_adam_mini: bool = param(False, "Use the Adam-mini optimiser (fewer optimiser states).", seed="use_adam_mini")
