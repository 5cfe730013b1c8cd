"""Two "nodes" on this machine: the same command twice, ``launch.nnodes=2`` with ``launch.node_rank=0`` and
``1``, one rank each, a c10d rendezvous on localhost and one shared store. Node 0 publishes and writes the
lock file; node 1 lends its rank and stops after the training stage. Runs with LLMPIPE_TEST_ALL_LAUNCHES=1."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("LLMPIPE_TEST_ALL_LAUNCHES", "").lower() not in ("1", "true", "yes"),
                                 reason="set LLMPIPE_TEST_ALL_LAUNCHES=1 (two more training processes)")]


def test_two_nodes_one_store(tmp_path, dist_cache, quick, lock_of):
    from llmpipe.launch.command import free_port

    port = free_port()
    env = {**os.environ, "LLMPIPE_CACHE": str(dist_cache), "PYTHONUNBUFFERED": "1"}
    procs = []
    for rank in (0, 1):
        cwd = tmp_path / f"node{rank}"
        cwd.mkdir()
        argv = [sys.executable, "-m", "llmpipe", *quick, "launch=ddp", "launch.nproc_per_node=1", "launch.nnodes=2",
                f"launch.rdzv_endpoint=127.0.0.1:{port}", f"launch.node_rank={rank}"]
        procs.append(subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n=====\n".join(o[-3000:] for o in outs)

    lock = lock_of(tmp_path / "node0" / "outputs")
    assert lock["status"] == "complete" and lock["stages"]["train"]["status"] == "ran"
    out = Path(lock["stages"]["train"]["output"])
    assert (out / "COMPLETE").is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()
    assert "launching 2 ranks (torchrun, node 0 of 2" in outs[0]
    assert "launching 2 ranks (torchrun, node 1 of 2" in outs[1] and "train: joined" in outs[1]
    assert not list((tmp_path / "node1").rglob("llmpipe.lock.yaml"))   # only node 0 writes the lock file
