"""Cross-field pre-flight rules. Importing this package registers every rule."""
from __future__ import annotations

import importlib

# One module per topic; each registers its rules with llmpipe.config.validate.rule on import.
_TOPICS = ("model", "data", "finetuning", "quantization", "optimizers", "preference", "ppo", "distributed",
           "inference", "export", "training", "data_sources")

for _name in _TOPICS:
    importlib.import_module(f"{__name__}.{_name}")

try:  # owned by another module author; registered when present
    importlib.import_module(f"{__name__}.safety")
except ModuleNotFoundError as _e:
    if _e.name != f"{__name__}.safety":
        raise
