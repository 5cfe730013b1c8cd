"""What importing the ML libraries costs a run, and two ways llmpipe pays less of it.

1. ``once_package_scan()``: transformers and TRL each call ``importlib.metadata.packages_distributions()`` (TRL at
   import), which reads the file list of every installed distribution: 0.4-0.5 s each in the project's venv (190
   import names). The installed packages do not change while llmpipe runs, so the first answer is kept; and it is
   kept on disk for the next runs of the same environment (``<user cache>/llmpipe/packages/``, the user cache being
   ``$XDG_CACHE_HOME`` or ``~/.cache``), keyed by the interpreter and by the modification time of every
   ``sys.path`` entry, which changes whenever a distribution is installed, upgraded or removed there. A cache that
   cannot be read or written is passed over (the scan runs as before).
2. ``warm_libraries(cfg)``: a job that waits for a stage another job is computing (a sweep's jobs share their
   first stages) imports torch, transformers, datasets, PEFT and TRL meanwhile, 5-8 s of one core that would
   otherwise come after the wait, on the sweep's critical path. Which libraries: those the run's stages import
   anyway (PEFT for adapters, the TRL trainer module of its train.stage); nothing else is imported.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
from pathlib import Path
from typing import Any

from llmpipe.config.rules._common import get

# the TRL trainer module that the train stage of each train.stage imports (llmpipe.training)
TRL_MODULES = {"dpo": "trl.trainer.dpo_trainer", "kto": "trl.trainer.kto_trainer", "rm": "trl.trainer.reward_trainer",
               "ppo": "trl.trainer.utils"}
ADAPTERS = ("lora", "oft")
# scans kept per environment: the key covers sys.path[0], the script's or working folder, so running from several
# folders makes several keys
KEEP_SCANS = 8


def once_package_scan() -> None:
    """Keep ``importlib.metadata.packages_distributions``'s first answer for the rest of the process (idempotent),
    read from and written to :func:`scan_cache` when it can be; each caller gets its own copy of the mapping."""
    scan = importlib.metadata.packages_distributions
    if getattr(scan, "llmpipe_once", False):
        return
    first = functools.cache(lambda: _cached(scan, scan_cache()))

    def packages_distributions() -> dict[str, list[str]]:
        return {name: list(dists) for name, dists in first().items()}

    packages_distributions.llmpipe_once = True
    importlib.metadata.packages_distributions = packages_distributions


def scan_cache() -> Path:
    """The file that holds this environment's package scan (see the module docstring)."""
    import hashlib
    import os
    import sys

    parts = [sys.executable, sys.prefix, sys.version]
    for entry in sys.path:
        try:
            parts.append(f"{entry}\t{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            parts.append(f"{entry}\t-")
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmpipe" / "packages"
    env = hashlib.sha256(sys.prefix.encode()).hexdigest()[:16]
    return root / env / (hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32] + ".json")


def _cached(scan, path: Path) -> dict[str, list[str]]:
    import json
    import os

    try:
        kept = json.loads(path.read_text())
        if isinstance(kept, dict) and all(isinstance(v, list) for v in kept.values()):
            return kept
    except (OSError, ValueError):
        pass
    found = scan()
    try:   # written whole or not at all; this environment keeps its KEEP_SCANS newest (one per working folder, say)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(found))
        os.replace(tmp, path)
        kept = sorted(path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in kept[KEEP_SCANS:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
    return found


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
