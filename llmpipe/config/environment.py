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
