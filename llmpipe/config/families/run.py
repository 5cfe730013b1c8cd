"""``run.*``: llmpipe's own run control. Never part of any fingerprint."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmpipe.config.meta import param


@dataclass
class RunConfig:
    name: str = param("${llmpipe.choice:recipe,adhoc}", "Run name used in output folders (default: the recipe's name).",
                      volatile=True)
    dry_run: bool = param(False, "Print the stage plan (run or cached) and stop; imports no torch.", volatile=True)
    force: Any = param(
        None, "Stages to re-run even when cached: a list of stage names, 'all' (or true).",
        volatile=True, default_factory=list,
    )
    cache_root: str = param(
        "${oc.env:LLMPIPE_CACHE,.llmpipe/cache}",
        "Content-addressed stage store (env LLMPIPE_CACHE overrides the default .llmpipe/cache).",
        volatile=True,
    )
    objective: str = param(
        "eval_loss", "Metric returned to Hydra sweepers (e.g. eval_loss, eval_rewards/accuracies).", volatile=True,
    )
    sample: bool = param(
        False, "After the run, show one held-out prompt with the trained model's greedy answer.", volatile=True,
    )
    objective_mode: str = param(
        "auto", "Whether a larger objective is better: min, max, or auto (by metric name).",
        choices=("auto", "min", "max"), volatile=True,
    )
