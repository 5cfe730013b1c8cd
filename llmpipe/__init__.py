"""llmpipe: a declarative, Hydra-native pipeline orchestrator for LLM post-training."""

__version__ = "0.1.0"
