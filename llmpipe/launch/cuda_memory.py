"""CUDA peak memory of a stage (import-light: torch is read from ``sys.modules``, never imported here).

A stage that used a GPU reports ``cuda_peak_gib``: ``torch.cuda.max_memory_allocated`` over the stage, in GiB,
the largest over this process's devices. The runner records it in the lock file and prints it in the stage's
progress line and the summary; a launched stage's rank 0 measures its own device. On a machine without CUDA,
or in a stage that never touched it, there is nothing to report and nothing is printed.
"""
from __future__ import annotations

import sys


def _cuda():
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        return cuda if cuda is not None and cuda.is_available() and cuda.is_initialized() else None
    except RuntimeError:   # a broken driver must not fail a stage over a statistic
        return None


def reset() -> None:
    """Start a new peak (CUDA counts from the process's first allocation otherwise)."""
    cuda = _cuda()
    if cuda is not None:
        for device in range(cuda.device_count()):
            cuda.reset_peak_memory_stats(device)


def peak_gib() -> float | None:
    """The peak since the last ``reset`` in GiB (3 decimals), or None when CUDA was not used."""
    cuda = _cuda()
    if cuda is None:
        return None
    peak = max((cuda.max_memory_allocated(d) for d in range(cuda.device_count())), default=0)
    return round(peak / 2**30, 3) if peak else None


def with_peak(info: dict) -> dict:
    """``info`` plus ``cuda_peak_gib`` when this process measured one (a launched stage's info keeps rank 0's)."""
    peak = peak_gib()
    return {**info, "cuda_peak_gib": peak} if peak is not None and "cuda_peak_gib" not in info else info
