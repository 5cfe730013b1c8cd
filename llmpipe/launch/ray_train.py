"""``launch.kind=ray``: the stage's ranks are Ray Train workers (``ray.train.torch.TorchTrainer``).

The driver (this process, which holds the store lock) writes the same config.yaml + spec.json as a torchrun
launch, calls ``ray.init(**launch.ray_init_kwargs)`` (a local Ray, shut down afterwards, unless the kwargs
name a cluster or Ray is already initialised), and runs a TorchTrainer whose every worker runs
:func:`llmpipe.launch.worker.main` on that spec: the rank code of the torchrun path, in the process group Ray
set up (gloo on CPU, nccl on GPUs; RANK/LOCAL_RANK/WORLD_SIZE in the environment). Rank 0 writes
``result.json`` and a failing rank its error record into the launch folder, and the runner publishes the
stage's output after ``fit()`` returns, as for torchrun. Import-light until :func:`spawn_ray` runs.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def scaling_kwargs(launch: Any, on_gpu: bool) -> dict[str, Any]:
    """``ray.train.ScalingConfig`` arguments of ``launch``."""
    kw: dict[str, Any] = {"num_workers": int(launch.ray_num_workers), "use_gpu": bool(on_gpu),
                          "placement_strategy": launch.ray_placement_strategy}
    resources = dict(launch.ray_resources_per_worker or {})
    if resources:
        kw["resources_per_worker"] = resources
    return kw


def run_kwargs(launch: Any, default_storage: Path, fingerprint: str) -> dict[str, Any]:
    """``ray.train.RunConfig`` arguments (the storage filesystem as its name; :func:`filesystem` builds it)."""
    storage = launch.ray_storage_path
    if storage and not launch.ray_storage_filesystem:
        storage = str(Path(storage).expanduser().absolute())
    return {"name": launch.ray_run_name or f"llmpipe-{fingerprint[:16]}",
            "storage_path": storage or str(default_storage),
            "storage_filesystem": launch.ray_storage_filesystem}


def init_kwargs(launch: Any) -> dict[str, Any]:
    """``ray.init`` arguments: the user's, over quiet defaults for a local Ray (no dashboard)."""
    kw: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
    kw.update(dict(launch.ray_init_kwargs or {}))
    return kw


def plan(launch: Any, on_gpu: bool, default_storage: Path, fingerprint: str) -> dict[str, Any]:
    """Everything the launch hands to Ray (shown by the flag-effect probe and the launch message)."""
    return {"init": init_kwargs(launch), "scaling": scaling_kwargs(launch, on_gpu),
            "run": run_kwargs(launch, default_storage, fingerprint)}


def filesystem(name: str | None):
    """The pyarrow filesystem of ``launch.ray_storage_filesystem`` (None: local paths)."""
    if not name:
        return None
    import pyarrow.fs

    return pyarrow.fs.S3FileSystem() if name == "s3" else pyarrow.fs.GcsFileSystem()


def _rank(config: dict[str, Any]) -> None:
    """One Ray Train worker: the torchrun rank's code, on the spec the driver wrote."""
    os.chdir(config["cwd"])
    os.environ.update(config["env"])
    threads = config["env"].get("OMP_NUM_THREADS")
    if threads:   # Ray forces 1 thread per CPU it assigns; torchrun ranks get their share of the cores
        import torch

        torch.set_num_threads(int(threads))
    from llmpipe.launch import worker

    worker.main([config["spec"]])


def spawn_ray(ctx: Any, say: Callable[[str], None]) -> dict:
    """Run ``ctx``'s stage on Ray Train workers and wait for them; rank 0's info."""
    import json
    import shutil

    from llmpipe.config.environment import current
    from llmpipe.launch.command import worker_env
    from llmpipe.launch.spawn import LaunchError, failure_report
    from llmpipe.launch.spec import write_spec

    launch = ctx.obj.launch
    launch_dir = Path(ctx.work) / "launch"
    shutil.rmtree(launch_dir, ignore_errors=True)   # an earlier attempt's result/errors are not this one's
    spec = write_spec(ctx, launch_dir / "ray", launch_dir=launch_dir)
    on_gpu = current().cuda and not ctx.obj.train.use_cpu
    settings = plan(launch, on_gpu, Path(ctx.work) / "ray", ctx.fingerprint)
    own = {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ}
    env = worker_env(own, {}, nproc=int(launch.ray_num_workers), on_gpu=on_gpu)
    config = {"spec": str(spec), "cwd": os.getcwd(), "env": env}

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    run = dict(settings["run"], storage_filesystem=filesystem(settings["run"]["storage_filesystem"]))
    started = not ray.is_initialized()
    saved = {k: os.environ.get(k) for k in ctx.secret_env}
    say(f"launching {launch.ray_num_workers} ranks (ray, Ray Train DDP, {settings['scaling']['placement_strategy']});"
        f" run {run['name']} in {run['storage_path']}")
    try:
        if started:
            # a local Ray's workers inherit this environment: the secrets reach them there, never in the
            # trainer's config (Ray saves that with the run)
            os.environ.update(ctx.secret_env)
            ray.init(**settings["init"])
        trainer = TorchTrainer(
            _rank, train_loop_config=config,
            scaling_config=ScalingConfig(**settings["scaling"]),
            run_config=RunConfig(**run),
            torch_config=TorchConfig(backend=launch.ddp_backend or ("nccl" if on_gpu else "gloo"),
                                     timeout_s=int(launch.ddp_timeout)),
        )
        try:
            trainer.fit()
        except Exception as e:  # noqa: BLE001  (Ray's TrainingFailedError and its start-up errors)
            headline, details = failure_report(1, f"{type(e).__name__}: {e}", launch_dir, None)
            for line in details:
                say(line)
            raise LaunchError(headline.replace("the launcher exited with code 1", "the Ray Train run failed")) from None
    finally:
        if started:
            ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    result = launch_dir / "result.json"
    if not result.is_file():
        raise LaunchError(f"the Ray Train run finished but rank 0 left no result in {launch_dir}")
    return json.loads(result.read_text(encoding="utf-8")).get("info") or {}
