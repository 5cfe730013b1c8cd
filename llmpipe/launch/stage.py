"""Executors of a stage (import-light: no torch).

* :func:`run_stage` runs a stage function: in this process, or, for a distributed-capable kind with
  ``launch.kind`` other than local, under the launcher on this node (the runner holds the store lock and
  publishes after every rank exited 0).
* :func:`spawn_stage` launches this node's ranks; with several nodes, the runner's follower nodes join node 0
  through it (leader=False). Nothing here knows the runner, the store or the lock file.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf


def launched(cfg: Any) -> bool:
    kind = OmegaConf.select(cfg, "launch.kind", default="local")
    return kind not in (None, "local")


def distributed(node: Any) -> bool:
    return bool(getattr(node.kind, "distributed", False)) and launched(node.cfg)


def launch_identities(cfg: Any) -> dict[str, str]:
    """External inputs of a launched stage for its fingerprint: the DeepSpeed JSON's content (a preset or
    the user's file), so editing the file re-runs the training."""
    if not launched(cfg) or OmegaConf.select(cfg, "launch.kind") != "deepspeed":
        return {}
    import hashlib

    from llmpipe.config.presets import deepspeed_path

    value = str(OmegaConf.select(cfg, "launch.deepspeed"))
    try:
        digest = hashlib.sha256(deepspeed_path(value).read_bytes()).hexdigest()
    except OSError:
        return {}
    return {f"deepspeed:{value}": digest}


def run_stage(ctx: Any, say: Callable[[str], None]) -> dict:
    """The stage function's info: in-process, or from rank 0 of a launched run."""
    if getattr(ctx.kind, "distributed", False) and launched(ctx.cfg):
        if OmegaConf.select(ctx.cfg, "launch.kind") == "ray":
            from llmpipe.launch.ray_train import spawn_ray

            return spawn_ray(ctx, say)
        return spawn_stage(ctx, say, leader=True)
    return ctx.kind.run(ctx) or {}


def spawn_stage(ctx: Any, say: Callable[[str], None], *, leader: bool) -> dict:
    """Launch this node's ranks for ``ctx`` and wait for them; rank 0's info (leader) or {} (follower)."""
    import json

    from llmpipe.config.environment import current
    from llmpipe.launch.command import deepspeed_argv, launcher_name, torchrun_argv, worker_env
    from llmpipe.launch.spawn import LaunchError, run_launcher
    from llmpipe.launch.spec import write_spec

    launch = ctx.obj.launch
    launch_dir = Path(ctx.work) / "launch"
    node_dir = launch_dir / f"node{launch.node_rank}"
    if leader:   # results and errors of an earlier attempt must not be mistaken for this one's
        shutil.rmtree(launch_dir / "errors", ignore_errors=True)
        (launch_dir / "result.json").unlink(missing_ok=True)
    shutil.rmtree(node_dir, ignore_errors=True)
    spec = write_spec(ctx, node_dir, launch_dir=launch_dir)
    log_dir = node_dir / "logs"
    which = launcher_name(launch)
    if which == "deepspeed":
        argv, log_dir = deepspeed_argv(launch, spec), None
    else:
        argv = torchrun_argv(launch, spec, log_dir=log_dir, run_id=f"llmpipe-{ctx.fingerprint[:16]}")
    on_gpu = current().cuda and not ctx.obj.train.use_cpu
    env = worker_env(os.environ, ctx.secret_env, nproc=launch.nproc_per_node, on_gpu=on_gpu)
    world = launch.nproc_per_node * launch.nnodes
    where = f"node {launch.node_rank} of {launch.nnodes}, " if launch.nnodes > 1 else ""
    say(f"launching {world} ranks ({which}, {where}{_describe(launch)}); logs in {log_dir or launch_dir}")
    run_launcher(argv, env, launch_dir=launch_dir, log_dir=log_dir, say=say)
    result = launch_dir / "result.json"
    if not leader:
        return {}
    if not result.is_file():
        hint = (": with several nodes, global rank 0 must run on launch.node_rank=0 (launch.master_addr/master_port,"
                " not a c10d rendezvous) or run.cache_root must be on a filesystem every node shares"
                if launch.nnodes > 1 else "")
        raise LaunchError(f"every rank exited 0 but rank 0 left no result in {launch_dir}{hint}")
    return json.loads(result.read_text(encoding="utf-8")).get("info") or {}


def _describe(launch: Any) -> str:
    if launch.kind == "deepspeed":
        return f"DeepSpeed {launch.deepspeed}"
    if launch.kind == "fsdp":
        return f"FSDP {launch.fsdp or 'full_shard auto_wrap'}"
    return "DDP"
