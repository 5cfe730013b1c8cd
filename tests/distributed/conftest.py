"""Shared by the distributed tests: one stage store for the whole session (load/adapt of the tiny model run
once and are reused by the local, DDP and ZeRO runs), and a helper that runs the real CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# A few real optimizer steps of LoRA SFT on the bundled task, small batches (2 ranks x 4 rows).
QUICK = ["+recipe=demo", "run.sample=false", "train.max_steps=3", "data.max_samples=32", "train.logging_steps=1",
         "train.per_device_train_batch_size=4", "train.per_device_eval_batch_size=16", "train.eval_strategy=no",
         "train.plot_loss=false", "export.dir=null"]


@pytest.fixture(scope="session")
def dist_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dist-cache")


def cli(cwd: Path, *args: str, cache: Path, check: bool = True, env: dict | None = None,
        timeout: int = 900) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "LLMPIPE_CACHE": str(cache), "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "llmpipe", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-5000:]}\nSTDERR:\n{proc.stderr[-5000:]}")
    return proc


def last_lock(root: Path) -> dict:
    locks = sorted(root.rglob("llmpipe.lock.yaml"), key=lambda p: p.stat().st_mtime)
    assert locks, f"no lock file under {root}"
    return yaml.safe_load(locks[-1].read_text())


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(cwd, *args, cache=..., check=True, env=None)``: the real ``python -m llmpipe``."""
    return cli


@pytest.fixture(scope="session")
def quick() -> list[str]:
    return list(QUICK)


@pytest.fixture(scope="session")
def lock_of():
    """``lock_of(folder)``: the newest llmpipe.lock.yaml under ``folder``, parsed."""
    return last_lock
