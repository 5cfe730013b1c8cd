"""Two identical pipelines started at once on one store, exporting to one folder: the stages and the export
take turns under their locks, so exactly one job writes the export, the other reports it as cached, and both
exit 0 with a lock file that says complete (before the export lock, the second job's export failed: "...
llmpipe-tmp-PID does not load in a fresh process"). The cheapest exporting pipeline: the built-in tiny model
exported as it is (load -> export), no data."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ARGS = ["+recipe=demo", "data.dataset=demo_sft", "data.eval_dataset=demo_sft_eval",
        "train.do_train=false", "train.do_eval=false", "train.eval_strategy=no", "run.sample=false",
        "data.dataset=null", "data.eval_dataset=null"]


def _start(cwd: Path, cache: Path, export: Path) -> subprocess.Popen:
    """One job in its own working directory (so its own job folder and lock file), on the shared store."""
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(LLMPIPE_CACHE=str(cache), PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "llmpipe", *ARGS, f"export.dir={export}"]
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_identical_pipelines_on_one_store_export_once(tmp_path):
    cache, export = tmp_path / "cache", tmp_path / "exports" / "tiny"
    t0 = time.time()
    jobs = [_start(tmp_path / f"job{i}", cache, export) for i in (1, 2)]
    outs = [job.communicate(timeout=600) for job in jobs]
    for job, (out, err) in zip(jobs, outs):
        assert job.returncode == 0, f"exit {job.returncode}\nSTDOUT:\n{out[-3000:]}\nSTDERR:\n{err[-3000:]}"
    found = [list((tmp_path / f"job{i}").rglob("llmpipe.lock.yaml")) for i in (1, 2)]
    assert [len(f) for f in found] == [1, 1], found
    locks = [yaml.safe_load(f[0].read_text()) for f in found]
    assert [lock["status"] for lock in locks] == ["complete", "complete"]
    exports = sorted(lock["stages"]["export"]["status"] for lock in locks)
    loads = sorted(lock["stages"]["load"]["status"] for lock in locks)
    assert exports == ["cached", "ran"] and loads == ["cached", "ran"], (exports, loads)
    assert (export / "llmpipe-export.json").is_file() and (export / "config.json").is_file()
    assert not list(export.parent.glob(f".{export.name}.llmpipe-tmp-*"))   # no staging folder left behind
    print(f"two jobs in {time.time() - t0:.1f}s; waited for the export lock: "
          f"{sum('another job is exporting' in out for out, _ in outs)} job(s)")
