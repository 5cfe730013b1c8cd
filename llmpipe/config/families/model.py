"""STUB: model family (to be completed)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import param


@dataclass
class ModelConfig:
    name_or_path: str = param("???", "Hub id or local path of the base model.", seed="model_name_or_path")

