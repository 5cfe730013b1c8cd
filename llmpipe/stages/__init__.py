"""Stage kinds. Importing this package registers every kind (declarations only: no torch)."""
from llmpipe.stages import kinds as _kinds  # noqa: F401
from llmpipe.stages.base import KINDS, StageContext, StageKind

__all__ = ["KINDS", "StageContext", "StageKind"]
