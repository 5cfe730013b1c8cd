"""What importing the ML libraries costs a run, and two ways llmpipe pays less of it.

1. ``once_package_scan()``: transformers and TRL each call ``importlib.metadata.packages_distributions()`` (TRL at
   import), which reads the file list of every installed distribution: 0.4 s each in the project's venv (190
   import names). The installed packages do not change while llmpipe runs, so the first answer is kept.
2. ``warm_libraries(cfg)``: a job that waits for a stage another job is computing (a sweep's jobs share their
   first stages) imports torch, transformers, datasets, PEFT and TRL meanwhile, 5-8 s of one core that would
   otherwise come after the wait, on the sweep's critical path. Which libraries: those the run's stages import
   anyway (PEFT for adapters, the TRL trainer module of its train.stage); nothing else is imported.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
from typing import Any

from llmpipe.config.rules._common import get

# the TRL trainer module that the train stage of each train.stage imports (llmpipe.training)
TRL_MODULES = {"dpo": "trl.trainer.dpo_trainer", "kto": "trl.trainer.kto_trainer", "rm": "trl.trainer.reward_trainer",
               "ppo": "trl.trainer.utils"}
ADAPTERS = ("lora", "oft")


def once_package_scan() -> None:
    """Keep ``importlib.metadata.packages_distributions``'s first answer for the rest of the process (idempotent);
    each caller gets its own copy of the mapping."""
    scan = importlib.metadata.packages_distributions
    if getattr(scan, "llmpipe_once", False):
        return
    first = functools.cache(scan)

    def packages_distributions() -> dict[str, list[str]]:
        return {name: list(dists) for name, dists in first().items()}

    packages_distributions.llmpipe_once = True
    importlib.metadata.packages_distributions = packages_distributions


def modules_for(cfg: Any) -> list[str]:
    """The library modules a run of ``cfg`` imports in its stages."""
    names = ["transformers.modeling_utils", "transformers.trainer", "datasets"]
    if str(get(cfg, "train.finetuning_type", "lora")) in ADAPTERS:
        names.append("peft")
    trl = TRL_MODULES.get(str(get(cfg, "train.stage", "sft")))
    if trl:
        names.append(trl)
    return names


def warm_libraries(cfg: Any) -> None:
    """Import :func:`modules_for` ``cfg`` now. A module that fails to import is left to the stage that needs it,
    which reports the error with its context."""
    for name in modules_for(cfg):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
