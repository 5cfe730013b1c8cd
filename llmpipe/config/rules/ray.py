"""Ray Train rules (launch.kind=ray, llmpipe.launch.ray_train): Ray installed, its settings only with it, a
run name and storage Ray can use, and workers a local Ray can place."""
from __future__ import annotations

import os
from pathlib import Path

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import get, launch_kind, problem

RAY_KEYS = ("launch.ray_num_workers", "launch.ray_run_name", "launch.ray_storage_path", "launch.ray_storage_filesystem",
            "launch.ray_resources_per_worker", "launch.ray_placement_strategy", "launch.ray_init_kwargs")
_DEFAULTS = {"launch.ray_num_workers": 1, "launch.ray_placement_strategy": "PACK"}
TORCHRUN_KEYS = {"launch.nproc_per_node": 1, "launch.nnodes": 1, "launch.node_rank": 0, "launch.rdzv_endpoint": None,
                 "launch.master_addr": "127.0.0.1", "launch.master_port": 29500}


def _on_gpu(cfg, env) -> bool:
    return env.cuda and not get(cfg, "train.use_cpu")


def _set(cfg, key):
    value = get(cfg, key)
    return value not in (None, {}, "") and value != _DEFAULTS.get(key)


@rule("launch-ray-package", keys=["launch.kind"], bad=[["launch=ray"]], good=[["launch=ddp"]],
      env={"missing_packages": frozenset({"ray"})})
def ray_package(cfg, env):
    """Ray Train must be installed to launch with it."""
    if launch_kind(cfg) == "ray" and not env.has("ray"):
        yield problem("launch-ray-package", "launch.kind", "ray", "Ray is not installed",
                      "launch=ddp (torchrun) without Ray", "pip install 'llmpipe[ray]', or launch=ddp")


@rule("launch-ray-settings", keys=list(RAY_KEYS) + list(TORCHRUN_KEYS),
      bad=[["launch=ddp", "launch.ray_num_workers=2"], ["launch.ray_run_name=x"],
           ["launch=ray", "launch.nproc_per_node=2"], ["launch=ray", "launch.nnodes=2", "launch.master_addr=10.0.0.1"]],
      good=[["launch=ray"], ["launch=ray", "launch.ray_run_name=x"], ["launch=ddp"]],
      env={"available_packages": frozenset({"ray"})})
def ray_settings(cfg, env):
    """launch.ray_* act only under launch.kind=ray, and torchrun's process counts do not apply there (Ray Train
    places launch.ray_num_workers workers on the cluster's nodes)."""
    kind = launch_kind(cfg)
    if kind != "ray":
        for key in RAY_KEYS:
            if _set(cfg, key):
                yield problem("launch-ray-settings", key, get(cfg, key), f"Ray Train settings act only under"
                              f" launch.kind=ray (launch.kind={kind})", "launch.kind=ray, or leave it unset",
                              "launch=ray")
        return
    for key, default in TORCHRUN_KEYS.items():
        if get(cfg, key, default) != default:
            yield problem("launch-ray-settings", key, get(cfg, key), "torchrun's process layout does not apply to"
                          " Ray Train, which places launch.ray_num_workers workers itself",
                          f"{key}={default} with launch.kind=ray", "launch.ray_num_workers=<ranks in all>")


@rule("launch-ray-run", keys=["launch.ray_run_name", "launch.ray_storage_path", "launch.ray_storage_filesystem"],
      bad=[["launch=ray", "launch.ray_run_name=a/b"], ["launch=ray", "launch.ray_run_name=' '"],
           ["launch=ray", "launch.ray_storage_path=/etc/hostname"],
           ["launch=ray", "launch.ray_storage_filesystem=s3", "launch.ray_storage_path=s3://bucket/runs"],
           ["launch=ray", "launch.ray_storage_filesystem=gs"]],
      good=[["launch=ray", "launch.ray_run_name=sft-1", "launch.ray_storage_path=/tmp/llmpipe-ray-runs"],
            ["launch=ray", "launch.ray_storage_filesystem=s3", "launch.ray_storage_path=bucket/runs"]],
      env={"available_packages": frozenset({"ray"})})
def ray_run(cfg, env):
    """Ray makes a folder named launch.ray_run_name under launch.ray_storage_path: one plain name, and a local
    storage folder that exists or can be made; with a storage filesystem the path has no scheme."""
    if launch_kind(cfg) != "ray":
        return
    name = get(cfg, "launch.ray_run_name")
    if name is not None and (not str(name).strip() or any(c in str(name) for c in "/\\:") or name in (".", "..")):
        yield problem("launch-ray-run", "launch.ray_run_name", name, "Ray Train names a folder after the run, so"
                      " the name must be one plain folder name", "a name without / \\ : (not . or ..)",
                      "launch.ray_run_name=my-run")
    path, fs = get(cfg, "launch.ray_storage_path"), get(cfg, "launch.ray_storage_filesystem")
    if fs and not path:
        yield problem("launch-ray-run", "launch.ray_storage_filesystem", fs, "names where Ray keeps the run, but"
                      " launch.ray_storage_path (the folder in it) is unset", "both, or neither (the stage's work"
                      " folder)", f"launch.ray_storage_path=<bucket/folder> with launch.ray_storage_filesystem={fs}")
    if not path:
        return
    if fs:
        if "://" in str(path):
            yield problem("launch-ray-run", "launch.ray_storage_path", path, f"with launch.ray_storage_filesystem={fs}"
                          " Ray wants the path inside the bucket, without a scheme", "bucket/folder",
                          f"launch.ray_storage_path={str(path).split('://', 1)[1]}")
        return
    where = Path(str(path)).expanduser().absolute()
    if where.exists() and not where.is_dir():
        yield problem("launch-ray-run", "launch.ray_storage_path", path, "exists and is not a folder",
                      "a folder (made when missing)", "launch.ray_storage_path=<folder>")
        return
    parent = where
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        yield problem("launch-ray-run", "launch.ray_storage_path", path, f"cannot be written ({parent} is not"
                      " writable)", "a folder this user can write", "launch.ray_storage_path=<writable folder>")


@rule("launch-ray-resources", keys=["launch.ray_num_workers", "launch.ray_resources_per_worker"],
      bad=[["launch=ray", "launch.ray_num_workers=4096"], ["launch=ray", "++launch.ray_resources_per_worker={GPU: 1}"]],
      good=[["launch=ray"], ["launch=ray", "++launch.ray_init_kwargs={address: auto}", "launch.ray_num_workers=64"]],
      env={"gpu_count": 0, "available_packages": frozenset({"ray"})})
def ray_resources(cfg, env):
    """A local Ray (no address in launch.ray_init_kwargs) owns this machine's cores and GPUs only: workers that
    ask for more would wait for resources forever."""
    if launch_kind(cfg) != "ray" or (get(cfg, "launch.ray_init_kwargs") or {}).get("address"):
        return
    workers = int(get(cfg, "launch.ray_num_workers", 1))
    res = dict(get(cfg, "launch.ray_resources_per_worker") or {})
    gpus = float(res.get("GPU", 1 if _on_gpu(cfg, env) else 0))
    cpus = float(res.get("CPU", 1))
    have_cpus = (get(cfg, "launch.ray_init_kwargs") or {}).get("num_cpus") or os.cpu_count() or 1
    if gpus > 0 and workers * gpus > env.gpu_count:
        yield problem("launch-ray-resources", "launch.ray_resources_per_worker" if "GPU" in res else
                      "launch.ray_num_workers", res or workers, f"{workers} workers x {gpus:g} GPU but a local Ray"
                      f" sees {env.gpu_count} GPU(s)", f"at most {env.gpu_count} GPUs in all, or"
                      " launch.ray_init_kwargs={address: ...} for a cluster", "launch.ray_num_workers=1" if env.gpu_count
                      else "drop GPU from launch.ray_resources_per_worker")
    elif workers * cpus > have_cpus:
        yield problem("launch-ray-resources", "launch.ray_num_workers", workers, f"{workers} workers x {cpus:g} CPU"
                      f" but a local Ray has {have_cpus} CPUs", f"at most {int(have_cpus // max(cpus, 1))} workers"
                      " here, or launch.ray_init_kwargs={address: ...} for a cluster",
                      f"launch.ray_num_workers={max(1, int(have_cpus // max(cpus, 1)))}")
