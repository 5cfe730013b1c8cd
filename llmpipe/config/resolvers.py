"""OmegaConf resolvers in the ``llmpipe.`` namespace. Registered explicitly by the entry points, before
Hydra starts (never as an import side effect)."""
from __future__ import annotations

import hashlib
from typing import Any

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


MAX_DIRNAME = 100


def _job_dirname(num: Any, overrides: str = "") -> str:
    """A sweep job's folder name: ``<num>_<overrides>``, one path component (``/`` becomes ``_``), cut to
    MAX_DIRNAME characters with a short hash of the whole so that long override lists stay distinct
    (file systems refuse names over 255 bytes; results.csv keeps the full overrides)."""
    name = f"{num}_{overrides}".replace("/", "_") if overrides else str(num)
    if len(name.encode()) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return name.encode()[:MAX_DIRNAME - 11].decode(errors="ignore") + "-" + digest


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("llmpipe.choice"):
        OmegaConf.register_new_resolver("llmpipe.choice", _choice)
    if not OmegaConf.has_resolver("llmpipe.job_dirname"):
        OmegaConf.register_new_resolver("llmpipe.job_dirname", _job_dirname)
