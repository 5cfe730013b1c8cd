"""Cores shared by the jobs of a parallel sweep: a Hydra joblib launcher with ``n_jobs`` > 1 runs that many jobs at
once on this machine, each in its own process. Torch's default (one intra-op thread per core in every process)
then puts ``n_jobs`` x cores threads on the cores, and each op of every job waits for threads that are not
scheduled. Each job gets ``cores // n_jobs`` threads instead (at least one), as torchrun's ranks do
(llmpipe.launch.command). ``OMP_NUM_THREADS``, when set, is the user's choice and wins. The log says which."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

_MARK = "LLMPIPE_SWEEP_THREADS"   # the OMP_NUM_THREADS value this module set (a joblib worker runs several jobs)


def parallel_jobs() -> int:
    """How many jobs of this Hydra multirun run at once on this machine (1 when not a parallel joblib sweep)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return 1
        launcher = HydraConfig.get().launcher
        target = str(launcher.get("_target_", ""))
        if "joblib" not in target.lower():
            return 1
        n = int(launcher.get("n_jobs", 1) or 1)
    except (ImportError, ValueError, AttributeError, TypeError):
        return 1
    cores = os.cpu_count() or 1
    return cores if n < 0 else max(1, n)   # joblib: -1 = one job per core


def share_cores(log: Callable[[str], Any] = print) -> int | None:
    """Set this job's torch threads to its share of the cores in a parallel sweep; the count set, or None."""
    jobs = parallel_jobs()
    if jobs <= 1:
        return None
    mine = os.environ.get(_MARK)
    if os.environ.get("OMP_NUM_THREADS") and os.environ.get("OMP_NUM_THREADS") != mine:
        log(f"{jobs} sweep jobs at once: torch threads from OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
        return None
    import torch

    threads = max(1, (os.cpu_count() or 1) // jobs)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = os.environ[_MARK] = str(threads)   # children (torchrun ranks) share the same way
    log(f"{jobs} sweep jobs at once on {os.cpu_count()} cores: {threads} torch thread(s) in this job "
        "(OMP_NUM_THREADS to choose)")
    return threads
