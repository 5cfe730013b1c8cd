"""The launcher command for one node and the environment of its ranks. Import-light (no torch).

torchrun is the default for every kind (DDP, DeepSpeed, FSDP): the Trainer/accelerate read the ranks from
its environment. ``launch.launcher=deepspeed`` starts DeepSpeed's own launcher instead (it passes
``--local_rank=N`` first; the worker accepts that).

One node (``launch.nnodes=1``) uses torchrun's standalone rendezvous on a free port, so jobs of a parallel
sweep never collide; several nodes use ``launch.master_addr``/``master_port`` with this node's
``launch.node_rank`` (static rendezvous: node 0 hosts global rank 0), or ``launch.rdzv_endpoint`` (c10d).
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, Mapping

WORKER_MODULE = "llmpipe.launch.worker"
LAUNCHERS = ("torchrun", "deepspeed")


def launcher_name(launch: Any) -> str:
    """torchrun, or deepspeed when ``launch.launcher=deepspeed`` asks for DeepSpeed's launcher (pre-flight
    has checked that it goes with ``launch.kind=deepspeed``)."""
    from llmpipe.launch.spawn import LaunchError

    wanted = getattr(launch, "launcher", "torchrun") or "torchrun"
    if wanted not in LAUNCHERS or (wanted == "deepspeed" and launch.kind != "deepspeed"):
        raise LaunchError(f"launch.launcher={wanted} with launch.kind={launch.kind}: expected torchrun, or deepspeed"
                          " for launch.kind=deepspeed")
    return wanted


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_argv(launch: Any, spec: Path, *, log_dir: Path, run_id: str, python: str = sys.executable) -> list[str]:
    """``python -m torch.distributed.run ... -m llmpipe.launch.worker <spec>`` for this node. Every rank's
    stdout/stderr goes to ``log_dir``; the console shows local rank 0 only (the parent filters it)."""
    argv = [python, "-m", "torch.distributed.run", f"--nproc-per-node={launch.nproc_per_node}",
            f"--nnodes={launch.nnodes}"]
    if launch.nnodes <= 1:
        argv.append("--standalone")
    elif launch.rdzv_endpoint:
        argv += ["--rdzv-backend=c10d", f"--rdzv-endpoint={launch.rdzv_endpoint}", f"--rdzv-id={run_id}"]
    else:
        argv += [f"--node-rank={launch.node_rank}", f"--master-addr={launch.master_addr}",
                 f"--master-port={launch.master_port}"]
    argv += ["--max-restarts=0", f"--log-dir={log_dir}", "--redirects=3", "--tee=3", "--local-ranks-filter=0",
             "-m", WORKER_MODULE, str(spec)]
    return argv


def deepspeed_argv(launch: Any, spec: Path, *, python: str = sys.executable, port: int | None = None) -> list[str]:
    """``python -m deepspeed.launcher.runner ... --module llmpipe.launch.worker <spec>`` for this node
    (several nodes: each node runs its own launcher, ``--no_ssh`` with its ``--node_rank``)."""
    argv = [python, "-m", "deepspeed.launcher.runner", f"--num_gpus={launch.nproc_per_node}"]
    if launch.nnodes > 1:
        argv += [f"--num_nodes={launch.nnodes}", "--no_ssh", f"--node_rank={launch.node_rank}",
                 f"--master_addr={launch.master_addr}", f"--master_port={launch.master_port}"]
    else:
        argv += [f"--master_port={port or free_port()}"]
    return argv + ["--module", WORKER_MODULE, str(spec)]


def worker_env(base: Mapping[str, str], secret_env: Mapping[str, str], *, nproc: int, on_gpu: bool,
               cpu_count: int | None = None) -> dict[str, str]:
    """The ranks' environment: the parent's, plus secrets (never argv), one share of the CPU threads per
    rank, unbuffered output, and DeepSpeed's CPU accelerator when no GPU is used."""
    env = dict(base)
    env.update(secret_env)
    env["PYTHONUNBUFFERED"] = "1"
    if "OMP_NUM_THREADS" not in env:   # torchrun would set 1 with a warning; share the cores instead
        env["OMP_NUM_THREADS"] = str(max(1, (cpu_count or os.cpu_count() or 1) // max(1, nproc)))
    if not on_gpu:
        env.setdefault("DS_ACCELERATOR", "cpu")
    return env
