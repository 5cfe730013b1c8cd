"""What the machine offers, found without importing torch (pre-flight must stay fast)."""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, field


def _count_gpus() -> int:
    forced = os.environ.get("LLMPIPE_GPU_COUNT")  # for tests and exotic setups
    if forced is not None:
        return int(forced)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        n = len([d for d in os.listdir("/proc/driver/nvidia/gpus")])
    except OSError:
        n = 0
    if visible is not None and n:
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        n = min(n, len(ids))
    return n


# Variables that put a run offline: for models and adapters, and for datasets (which also honour their own).
_OFFLINE_VARS = ("LLMPIPE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_DATASETS_OFFLINE_VARS = ("LLMPIPE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline(*, datasets: bool = False) -> str | None:
    """The environment variable that puts this run offline (for datasets: ``datasets=True``), or None."""
    for var in _DATASETS_OFFLINE_VARS if datasets else _OFFLINE_VARS:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


@dataclass(frozen=True)
class Environment:
    gpu_count: int = 0
    missing_packages: frozenset[str] = field(default_factory=frozenset)
    available_packages: frozenset[str] = field(default_factory=frozenset)

    @property
    def cuda(self) -> bool:
        return self.gpu_count > 0

    def has(self, module: str) -> bool:
        if module in self.available_packages:
            return True
        if module in self.missing_packages:
            return False
        return _has_module(module)


@functools.lru_cache(maxsize=None)
def _has_module(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def current() -> Environment:
    return Environment(gpu_count=_count_gpus())
