"""Every trainer of llmpipe, attached to its train stage (llmpipe.config.train_stages) on import.

The train stage imports this module when it runs; the modules below import torch and the HF stack only
inside their functions."""
from __future__ import annotations

from llmpipe.training import causal, kto, ppo, preference, reward  # noqa: F401  (each @implements its stages)
