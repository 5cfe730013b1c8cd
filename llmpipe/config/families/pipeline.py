"""``pipeline.*``: the shape of the stage graph beyond what the families imply."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

from llmpipe.config.meta import param


@dataclass
class PipelineConfig:
    before: Dict[str, Any] = param(
        None,
        "Train stages that run before the main one, in order, e.g. {sft: {train.stage: sft, data.dataset: x}};"
        " each entry is a set of overrides; the main train stage starts from the last one's result.",
        default_factory=dict,
    )
