"""run_launcher with the real torchrun (no training): a rank that raises is named with its exception and
traceback, rank 0's marked lines reach the console, the launcher's own chatter does not."""
from __future__ import annotations

import os
import sys

import pytest

from llmpipe.launch.command import worker_env
from llmpipe.launch.spawn import LaunchError, run_launcher

SCRIPT = r"""
import os, sys, time
from pathlib import Path
from llmpipe.launch.worker import LOG_MARK, _write_json, error_record
rank = int(os.environ["RANK"])
if rank == 0:
    print(LOG_MARK + "hello from rank 0", flush=True)
print("library chatter", flush=True)
if rank == 1 and sys.argv[2] == "fail":
    try:
        raise ValueError("bad shard on rank 1")
    except ValueError as e:
        _write_json(Path(sys.argv[1]) / "errors" / "rank-1.json", error_record(e, 1, 1))
        raise
time.sleep(0.2)
"""


def test_real_torchrun_rank_error(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(SCRIPT)
    logs = tmp_path / "logs"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone", "--max-restarts=0",
            f"--log-dir={logs}", "--redirects=3", "--tee=3", "--local-ranks-filter=0", str(script), str(tmp_path), "fail"]
    said: list[str] = []
    env = worker_env(os.environ, {}, nproc=2, on_gpu=False)
    with pytest.raises(LaunchError) as info:
        run_launcher(argv, env, launch_dir=tmp_path, log_dir=logs, say=said.append)
    assert str(info.value).startswith("rank 1 failed: ValueError: bad shard on rank 1"), str(info.value)
    assert str(logs) in str(info.value)
    assert said[0] == "hello from rank 0" and "rank 1's error:" in said
    assert any('raise ValueError("bad shard on rank 1")' in line for line in said), said
    assert not any("library chatter" in line for line in said)
