"""`make demo` (``python -m llmpipe +recipe=demo``) end to end, once: the tiny model visibly learns the demo task
(held-out exact match <= 10 % before, >= 90 % after, three held-out answers shown right), the console is quiet
(no banner, no "Failed to load", no raw library lines) and the summary says where the full library log is."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import yaml
from console_support import assert_quiet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "LLMPIPE_CACHE": str(tmp_path_factory.mktemp("store")), "PYTHONUNBUFFERED": "1"}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "llmpipe", "+recipe=demo"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"STDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
    print(f"\ndemo: {time.time() - t0:.0f}s")
    lock = yaml.safe_load(next(cwd.rglob("llmpipe.lock.yaml")).read_text())
    return cwd, proc, lock


def test_demo_learns_the_task(demo):
    cwd, proc, lock = demo
    sample = lock["sample"]
    assert sample["heldout_examples"] == 100
    assert sample["heldout_exact_match_before"] <= 10, sample
    assert sample["heldout_exact_match_after"] >= 90, sample
    out = proc.stdout
    assert re.search(r"held-out accuracy: \d+% before -> \d+% after training", out), out[-2000:]
    assert out.count("(right)") == 3, out[-2000:]
    assert (cwd / "exports" / "demo" / "config.json").is_file()     # where the README says it goes


def test_demo_console_is_quiet_and_names_the_log(demo):
    cwd, proc, _ = demo
    assert_quiet(proc)
    log = re.search(r"log file:\s+(\S+)", proc.stdout)
    assert log and log.group(1).endswith("llmpipe.log") and os.path.isfile(log.group(1)), proc.stdout[-2000:]
    assert re.search(r"train: step (\d+)/\1  loss=", proc.stdout)   # the final loss is always shown
