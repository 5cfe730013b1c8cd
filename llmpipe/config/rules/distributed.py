"""Launch rules: FSDP/DeepSpeed/DDP settings against each other and against the machine's devices."""
from __future__ import annotations

import json
import os
from pathlib import Path

from llmpipe.config.rules._common import (
    DS_PRESETS, adapters, get, launch_kind, problem, uses_deepspeed, uses_fsdp, zero_stage,
)
from llmpipe.config.validate import rule


def _on_gpu(cfg, env) -> bool:
    return (env.cuda and not get(cfg, "train.use_cpu")) or get(cfg, "launch.ddp_backend") == "nccl"


@rule("launch-fsdp-cuda", keys=["launch.kind", "launch.fsdp"],
      bad=[["launch=fsdp"], ["launch=fsdp", "launch.ddp_backend=gloo"]], good=[["launch=ddp"], ["launch=local"]],
      env={"gpu_count": 0})
def fsdp_cuda(cfg, env):
    """Without CUDA, transformers/accelerate silently run DDP instead of FSDP: refuse it."""
    if uses_fsdp(cfg) and not _on_gpu(cfg, env):
        where = "with train.use_cpu=true" if env.cuda else "on this CPU-only machine"
        yield problem("launch-fsdp-cuda", "launch.kind", launch_kind(cfg),
                      f"FSDP through the Trainer needs CUDA GPUs; {where} it would silently run as DDP",
                      "launch=ddp or launch=deepspeed_z3 (ZeRO-3 shards on CPU too)", "launch=deepspeed_z3")


@rule("launch-kind-settings", keys=["launch.kind", "launch.deepspeed", "launch.fsdp", "launch.nproc_per_node"],
      bad=[["launch.deepspeed=z2"], ["launch=ddp", "launch.deepspeed=z2"], ["launch=deepspeed_z3", "launch.fsdp=full_shard"],
           ["launch=fsdp", "launch.deepspeed=z3"], ["launch.kind=deepspeed", "launch.nproc_per_node=2"],
           ["launch.nproc_per_node=2"]],
      good=[["launch=deepspeed_z2"], ["launch=ddp"], ["launch=fsdp"], ["launch=local"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def kind_settings(cfg, env):
    """launch.kind decides the launcher; DeepSpeed and FSDP settings must match it (and never both)."""
    kind, ds, fsdp = get(cfg, "launch.kind", "local"), get(cfg, "launch.deepspeed"), get(cfg, "launch.fsdp")
    if ds and fsdp:
        yield problem("launch-kind-settings", "launch.deepspeed + launch.fsdp", f"{ds} + {fsdp}",
                      "DeepSpeed and FSDP both shard the model; only one can be used", "one of them",
                      "launch=deepspeed_z3 (DeepSpeed) or launch=fsdp (FSDP)")
    if ds and kind not in ("deepspeed",) and not (kind == "fsdp" and fsdp):
        yield problem("launch-kind-settings", "launch.deepspeed", ds, f"DeepSpeed needs the deepspeed launcher; launch.kind={kind}",
                      "launch.kind=deepspeed with launch.deepspeed", f"launch.kind=deepspeed (or launch=deepspeed_{ds})"
                      if ds in DS_PRESETS else "launch.kind=deepspeed")
    if kind == "deepspeed" and not ds:
        yield problem("launch-kind-settings", "launch.deepspeed", None, "launch.kind=deepspeed needs a DeepSpeed config",
                      f"a preset ({', '.join(DS_PRESETS)}) or a JSON file", "launch=deepspeed_z2")
    if fsdp and kind != "fsdp" and not ds:
        yield problem("launch-kind-settings", "launch.fsdp", fsdp, f"FSDP needs launch.kind=fsdp; launch.kind={kind}",
                      "launch.kind=fsdp with launch.fsdp", "launch.kind=fsdp (or launch=fsdp)")
    nproc = get(cfg, "launch.nproc_per_node", 1)
    if kind == "local" and (nproc > 1 or get(cfg, "launch.nnodes", 1) > 1):
        yield problem("launch-kind-settings", "launch.nproc_per_node", nproc,
                      "launch.kind=local runs a single process, so several processes per node cannot be honoured",
                      "launch.nproc_per_node=1 with launch=local", "launch=ddp launch.nproc_per_node=" + str(nproc))


@rule("launch-nproc-gpus", keys=["launch.nproc_per_node"],
      bad=[["launch=ddp", "launch.nproc_per_node=4"], ["launch=deepspeed_z2", "launch.nproc_per_node=3"]],
      good=[["launch=ddp", "launch.nproc_per_node=2"], ["launch=ddp", "launch.nproc_per_node=4", "train.use_cpu=true"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def nproc_gpus(cfg, env):
    """On GPUs (or with nccl) each process needs its own GPU."""
    nproc = get(cfg, "launch.nproc_per_node", 1)
    if launch_kind(cfg) == "local" or not _on_gpu(cfg, env) or nproc <= env.gpu_count:
        return
    yield problem("launch-nproc-gpus", "launch.nproc_per_node", nproc, f"asks for {nproc} GPU processes but {env.gpu_count} GPU(s) are visible",
                  f"at most {env.gpu_count} processes per node on this machine (or train.use_cpu=true with gloo)",
                  f"launch.nproc_per_node={max(1, env.gpu_count)}")


@rule("launch-nproc-cpus", keys=["launch.nproc_per_node"],
      bad=[["launch=ddp", "launch.nproc_per_node=4096"]],
      good=[["launch=ddp", "launch.nproc_per_node=2"], ["launch.nproc_per_node=1"]],
      env={"gpu_count": 0})
def nproc_cpus(cfg, env):
    """On CPU (gloo) every process is a full training process: no more of them than CPU cores."""
    nproc, cores = get(cfg, "launch.nproc_per_node", 1), os.cpu_count() or 1
    if launch_kind(cfg) == "local" or _on_gpu(cfg, env) or nproc <= cores:
        return
    yield problem("launch-nproc-cpus", "launch.nproc_per_node", nproc, f"{nproc} CPU training processes on a machine with {cores} cores",
                  f"at most {cores} processes per node here", f"launch.nproc_per_node={min(cores, 2)}")


@rule("launch-backend", keys=["launch.ddp_backend"],
      bad=[["launch=ddp", "launch.ddp_backend=nccl"], ["launch=ddp", "launch.ddp_backend=ccl"]],
      good=[["launch=ddp", "launch.ddp_backend=gloo"], ["launch=ddp"]],
      env={"gpu_count": 0, "missing_packages": frozenset({"oneccl_bindings_for_pytorch"})})
def backend(cfg, env):
    """nccl needs CUDA; ccl needs Intel's oneCCL bindings. On CPU (DeepSpeed included) use gloo."""
    be = get(cfg, "launch.ddp_backend")
    if be == "nccl" and not env.cuda:
        yield problem("launch-backend", "launch.ddp_backend", be, "nccl communicates between CUDA GPUs and this machine has none",
                      "gloo on CPU (also for DeepSpeed)", "launch.ddp_backend=gloo")
    elif be == "ccl" and not env.has("oneccl_bindings_for_pytorch"):
        yield problem("launch-backend", "launch.ddp_backend", be, "needs oneccl_bindings_for_pytorch, which is not installed",
                      "gloo (always available)", "launch.ddp_backend=gloo")


@rule("launch-deepspeed-config", keys=["launch.deepspeed"],
      bad=[["launch=deepspeed_z2", "launch.deepspeed=/no/such/ds_config.json"], ["launch=deepspeed_z2", "launch.deepspeed=z4"]],
      good=[["launch=deepspeed_z2"], ["launch=deepspeed_z3_offload"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def deepspeed_config(cfg, env):
    """launch.deepspeed is a shipped preset or an existing, readable JSON file."""
    ds = get(cfg, "launch.deepspeed")
    if not ds or not isinstance(ds, str) or ds in DS_PRESETS:
        return
    path = Path(ds).expanduser()
    if not path.is_file():
        yield problem("launch-deepspeed-config", "launch.deepspeed", ds, "is neither a DeepSpeed preset nor an existing file",
                      f"{', '.join(DS_PRESETS)} or a path to a DeepSpeed JSON config", "launch.deepspeed=z2")
        return
    try:
        json.loads(path.read_text())
    except (OSError, ValueError) as e:
        yield problem("launch-deepspeed-config", "launch.deepspeed", ds, f"cannot be read as JSON: {e}",
                      "a DeepSpeed JSON config", "fix the file, or launch.deepspeed=z2")


@rule("launch-deepspeed-package", keys=["launch.deepspeed", "launch.kind"],
      bad=[["launch=deepspeed_z2"]], good=[["launch=ddp"]],
      env={"gpu_count": 2, "missing_packages": frozenset({"deepspeed"})})
def deepspeed_package(cfg, env):
    """DeepSpeed must be installed to launch with it."""
    if uses_deepspeed(cfg) and not env.has("deepspeed"):
        yield problem("launch-deepspeed-package", "launch.kind", launch_kind(cfg), "DeepSpeed is not installed",
                      "launch=ddp without DeepSpeed", "DS_BUILD_OPS=0 pip install deepspeed, or launch=ddp")


@rule("launch-multinode", keys=["launch.nnodes", "launch.node_rank", "launch.master_addr"],
      bad=[["launch=ddp", "launch.nnodes=2"], ["launch=ddp", "launch.nnodes=2", "launch.master_addr=10.0.0.1",
                                               "launch.node_rank=2"]],
      good=[["launch=ddp", "launch.nnodes=2", "launch.master_addr=10.0.0.1", "launch.node_rank=1"], ["launch=ddp"]],
      env={"gpu_count": 2})
def multinode(cfg, env):
    """Several nodes need a reachable rank-0 address, and this node's rank must be below nnodes."""
    nnodes, rank = get(cfg, "launch.nnodes", 1), get(cfg, "launch.node_rank", 0)
    if nnodes <= 1:
        return
    addr = str(get(cfg, "launch.master_addr", ""))
    if not get(cfg, "launch.rdzv_endpoint") and addr in ("", "127.0.0.1", "localhost", "::1"):
        yield problem("launch-multinode", "launch.master_addr", addr, f"other nodes cannot reach a loopback address (launch.nnodes={nnodes})",
                      "the rank-0 node's network address", "launch.master_addr=<ip of node 0>")
    if rank >= nnodes:
        yield problem("launch-multinode", "launch.node_rank", rank, f"node ranks run from 0 to {nnodes - 1}",
                      f"0..{nnodes - 1}", f"launch.node_rank={nnodes - 1}")


@rule("launch-zero3", keys=["launch.deepspeed", "train.pure_bf16", "lora.pissa_init", "train.predict_with_generate",
                            "model.use_unsloth", "model.adapter_name_or_path"],
      bad=[["launch=deepspeed_z3", "train.pure_bf16=true"], ["launch=deepspeed_z3", "lora=pissa"],
           ["launch=deepspeed_z3", "train.predict_with_generate=true"],
           ["launch=deepspeed_z3", "model.adapter_name_or_path='llmpipe-test/a,llmpipe-test/b'"]],
      good=[["launch=deepspeed_z2", "train.pure_bf16=true"], ["launch=deepspeed_z2", "lora=pissa"],
            ["launch=deepspeed_z3", "model.adapter_name_or_path=llmpipe-test/a"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def zero3(cfg, env):
    """ZeRO-3 partitions every weight; features that need whole weights on each rank cannot run under it."""
    if zero_stage(cfg) != 3:
        return
    checks = (("train.pure_bf16", "pure bf16 training casts whole weights"),
              ("lora.pissa_init", "PiSSA initialisation decomposes whole weight matrices"),
              ("train.predict_with_generate", "generation needs whole weights on every rank"),
              ("model.use_unsloth", "Unsloth patches whole modules"))
    for key, why in checks:
        if get(cfg, key):
            yield problem("launch-zero3", key, True, f"{why}, which DeepSpeed ZeRO-3 partitions",
                          f"{key}=false under ZeRO-3, or ZeRO-2", f"{key}=false, or launch=deepspeed_z2")
    if len(adapters(cfg)) > 1:
        yield problem("launch-zero3", "model.adapter_name_or_path", get(cfg, "model.adapter_name_or_path"),
                      "several adapters must be merged into weights that ZeRO-3 partitions",
                      "a single adapter under ZeRO-3", "merge the adapters first (export), or launch=deepspeed_z2")
