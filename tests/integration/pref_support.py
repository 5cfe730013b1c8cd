"""What the preference/PPO test modules share: the real CLI in a subprocess, and reading a job's records."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


def cli(cwd: Path, cache: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m llmpipe *args`` in ``cwd`` with the store at ``cache``; fails the test on a non-zero exit."""
    full = {**os.environ, "LLMPIPE_CACHE": str(cache), "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "llmpipe", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
    return proc


def last_lock(cwd: Path) -> dict:
    """The lock file of the newest job under ``cwd``."""
    locks = sorted(cwd.rglob("llmpipe.lock.yaml"), key=lambda p: p.stat().st_mtime)
    return yaml.safe_load(locks[-1].read_text())


def stage_output(lock: dict, node: str) -> Path:
    return Path(lock["stages"][node]["output"])
