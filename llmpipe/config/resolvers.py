"""OmegaConf resolvers in the ``llmpipe.`` namespace. Registered explicitly by the entry points, before
Hydra starts (never as an import side effect)."""
from __future__ import annotations

from omegaconf import OmegaConf


def _choice(group: str, default: str = "") -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices
        value = choices.get(group)
    except Exception:  # outside a Hydra run (compose API, tools): fall back
        value = None
    if not value:
        return default
    return str(value).replace("/", "_")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("llmpipe.choice"):
        OmegaConf.register_new_resolver("llmpipe.choice", _choice)
