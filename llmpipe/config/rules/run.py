"""Run-control rules: the stage store must be a writable folder, and the sweep objective a metric llmpipe
reports. Checked before Hydra writes anything, so a refusal leaves nothing behind."""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import fmt, get, problem

# The metric names the stages report (metrics.json of each stage; the lock file's "metrics"): trainer losses
# and rates (train_*, eval_* incl. TRL's eval_rewards/..., eval_<dataset>_loss), PPO rewards, predict's scores,
# and export's verification numbers. run.objective must match one of them.
METRIC_PATTERNS = (
    "train_*", "eval_*", "global_step", "epoch", "reward_*", "kl_coef",
    "predict_*", "bleu-4", "rouge-1", "rouge-2", "rouge-l", "exact_match",
    "perplexity", "max_logit_diff*", "shards", "total_bytes",
)


def known_metric(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in METRIC_PATTERNS)


@rule("run-objective", keys=["run.objective"],
      bad=[["run.objective=happiness"], ["run.objective=''"]],
      good=[["run.objective=eval_loss"], ["run.objective=eval_rewards/accuracies"], ["run.objective=bleu-4"],
            ["run.objective=reward_mean"]])
def objective(cfg, env):
    """run.objective (what a sweep optimizes) must be a metric the stages report; otherwise every job's
    objective is empty and the sweeper compares nothing."""
    name = str(get(cfg, "run.objective", "") or "")
    if not known_metric(name):
        yield problem("run-objective", "run.objective", name, "is not a metric llmpipe reports",
                      f"names matching {fmt(METRIC_PATTERNS)} (the lock file's metrics list every reported value)",
                      "run.objective=eval_loss")


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path("/")


@rule("run-cache-root", keys=["run.cache_root"],
      bad=[["run.cache_root=/dev/null"], ["run.cache_root=/proc/version/cache"]],
      good=[["run.cache_root=.llmpipe/cache"], ["run.cache_root=/tmp/llmpipe-rule-example/cache"]])
def cache_root(cfg, env):
    """run.cache_root must be a folder llmpipe can create or write: checked without creating anything."""
    raw = str(get(cfg, "run.cache_root", "") or "")
    if not raw.strip():
        yield problem("run-cache-root", "run.cache_root", raw, "is empty", "a writable folder",
                      "run.cache_root=.llmpipe/cache")
        return
    path = Path(raw).expanduser()
    base = _nearest_existing(path.absolute())
    why = None
    if not base.is_dir():
        why = f"{base} exists and is not a folder"
    elif not os.access(base, os.W_OK | os.X_OK):
        why = f"{base} is not writable by this user"
    if why:
        yield problem("run-cache-root", "run.cache_root", raw, f"cannot hold the stage store: {why}",
                      "a writable folder (created when missing)", "run.cache_root=<writable folder> or set LLMPIPE_CACHE")
