"""STUB: vision family (to be completed)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import param


@dataclass
class VisionConfig:
    pass
