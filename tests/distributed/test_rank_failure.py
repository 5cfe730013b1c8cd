"""A rank killed in the middle of a 2-process DDP run: the stage fails with that rank named, nothing is
marked complete, the lock file says failed. While the ranks run: the hub token given on the command line
is in their environment, never in their argv, and the config file they read has it redacted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SECRET = "hf_llmpipeRankSecret0123456789"


def _launched(cwd: Path) -> dict[int, tuple[list[str], dict[str, str]]]:
    """pid -> (argv, environment) of the launcher and the ranks started in ``cwd`` (found through /proc)."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            if "llmpipe.launch.worker" not in argv or Path(os.readlink(f"/proc/{pid}/cwd")) != cwd:
                continue
            env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
                       .split("\0") if "=" in kv)
        except OSError:
            continue
        out[int(pid)] = (argv, env)
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks through /proc")
def test_killed_rank_fails_the_stage_and_nothing_is_complete(tmp_path, dist_cache, quick, lock_of):
    args = [a for a in quick if not a.startswith("train.max_steps")]
    env = {**os.environ, "LLMPIPE_CACHE": str(dist_cache), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "llmpipe", *args, "launch=ddp", "train.max_steps=500",
                             f"model.hf_hub_token={SECRET}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen, victim, procs = [], None, {}
    deadline = time.time() + 600
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if victim is None and "step 2/500" in line:
            procs = _launched(tmp_path.resolve())
            victim = next((pid for pid, (_, wenv) in procs.items() if wenv.get("LOCAL_RANK") == "1"), None)
            assert victim, f"no rank 1 among {procs}"
            os.kill(victim, signal.SIGKILL)
        if time.time() > deadline:
            proc.kill()
            pytest.fail("the run did not end")
    rc = proc.wait()
    out = "".join(seen)
    assert rc == 1, out[-4000:]
    assert victim is not None, out[-4000:]

    # the launcher and the ranks got the secret through the environment only
    ranks = [wenv for _, wenv in procs.values() if "LOCAL_RANK" in wenv]
    assert len(procs) == 3 and len(ranks) == 2, procs
    for argv, wenv in procs.values():
        assert not any(SECRET in a for a in argv) and wenv.get("HF_TOKEN") == SECRET

    # the failing rank is named, with what happened to it, once; no traceback of llmpipe itself
    assert "rank 1 failed: killed by SIGKILL" in out, out[-4000:]
    assert "llmpipe: stage train failed: rank 1 failed" in out and "Traceback (most recent call last)" not in out
    assert SECRET not in out

    # nothing complete: no published train entry, the lock file says failed
    lock = lock_of(tmp_path / "outputs")
    assert lock["status"] == "failed at train" and lock["stages"]["train"]["status"] == "failed"
    assert "rank 1" in lock["stages"]["train"]["error"]
    entry = dist_cache / "train" / lock["stages"]["train"]["fingerprint"]
    assert not entry.exists() and entry.with_name(entry.name + ".work").is_dir()
    # the config file the ranks read has the token redacted
    config = (entry.with_name(entry.name + ".work") / "launch" / "node0" / "config.yaml").read_text()
    assert SECRET not in config and "<redacted>" in config
