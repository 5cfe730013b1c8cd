"""Launch rules: FSDP/DeepSpeed/DDP settings against each other and against the machine's devices."""
from __future__ import annotations

import json
import os
from pathlib import Path

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import (
    DS_PRESETS,
    adapters,
    get,
    launch_kind,
    problem,
    uses_deepspeed,
    uses_fsdp,
    world_size,
    zero_stage,
)

# DeepSpeed JSON files used by the examples of the rules that read a user's file (a checkout's tests).
_DS_EXAMPLES = Path(__file__).resolve().parents[3] / "tests" / "distributed" / "fixtures"


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


@rule("launch-kind-settings", keys=["launch.kind", "launch.deepspeed", "launch.fsdp", "launch.nproc_per_node",
                                     "launch.launcher"],
      bad=[["launch.deepspeed=z2"], ["launch=ddp", "launch.launcher=deepspeed"], ["launch=ddp", "launch.deepspeed=z2"], ["launch=deepspeed_z3", "launch.fsdp=full_shard"],
           ["launch=fsdp", "launch.deepspeed=z3"], ["launch.kind=deepspeed", "launch.nproc_per_node=2"],
           ["launch.nproc_per_node=2"]],
      good=[["launch=deepspeed_z2"], ["launch=deepspeed_z2", "launch.launcher=deepspeed"], ["launch=ddp"],
            ["launch=fsdp"], ["launch=local"]],
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
    if get(cfg, "launch.launcher", "torchrun") == "deepspeed" and kind != "deepspeed":
        yield problem("launch-kind-settings", "launch.launcher", "deepspeed",
                      f"DeepSpeed's launcher only starts DeepSpeed runs; launch.kind={kind}",
                      "launch.launcher=torchrun, or launch.kind=deepspeed", "launch.launcher=torchrun")
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
      bad=[["launch=ddp", "launch.ddp_backend=nccl"], ["launch=ddp", "launch.ddp_backend=ccl"],
           ["launch.ddp_backend=gloo"]],
      good=[["launch=ddp", "launch.ddp_backend=gloo"], ["launch=ddp"]],
      env={"gpu_count": 0, "missing_packages": frozenset({"oneccl_bindings_for_pytorch"})})
def backend(cfg, env):
    """nccl needs CUDA; ccl needs Intel's oneCCL bindings. On CPU (DeepSpeed included) use gloo. A backend
    means nothing to a single in-process run (launch=local)."""
    be = get(cfg, "launch.ddp_backend")
    if be and launch_kind(cfg) == "local":
        yield problem("launch-backend", "launch.ddp_backend", be, "a single in-process run (launch=local) has no process"
                      " group, so the backend would be ignored", "launch.ddp_backend=null with launch=local",
                      "launch.ddp_backend=null, or launch=ddp")
    elif be == "nccl" and not env.cuda:
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


@rule("launch-multinode", keys=["launch.nnodes", "launch.node_rank", "launch.master_addr", "launch.rdzv_endpoint"],
      bad=[["launch=ddp", "launch.nnodes=2"], ["launch=ddp", "launch.nnodes=2", "launch.master_addr=10.0.0.1",
                                               "launch.node_rank=2"], ["launch=ddp", "launch.node_rank=1"],
           ["launch=ddp", "launch.nnodes=2", "launch.rdzv_endpoint=head"]],
      good=[["launch=ddp", "launch.nnodes=2", "launch.master_addr=10.0.0.1", "launch.node_rank=1"], ["launch=ddp"],
            ["launch=ddp", "launch.nnodes=2", "launch.rdzv_endpoint=head:29400", "launch.node_rank=1"]],
      env={"gpu_count": 2})
def multinode(cfg, env):
    """Several nodes need a reachable rank-0 address (or a host:port rendezvous endpoint), and this node's
    rank must be below nnodes."""
    nnodes, rank = get(cfg, "launch.nnodes", 1), get(cfg, "launch.node_rank", 0)
    if rank >= nnodes:
        yield problem("launch-multinode", "launch.node_rank", rank, f"node ranks run from 0 to {nnodes - 1}"
                      f" (launch.nnodes={nnodes})", f"0..{nnodes - 1}", f"launch.node_rank={nnodes - 1}")
    endpoint = get(cfg, "launch.rdzv_endpoint")
    if endpoint and not str(endpoint).rpartition(":")[2].isdigit():
        yield problem("launch-multinode", "launch.rdzv_endpoint", endpoint, "needs the port of the rendezvous",
                      "host:port of a node every node can reach", f"launch.rdzv_endpoint={endpoint}:29400")
    if nnodes <= 1:
        return
    addr = str(get(cfg, "launch.master_addr", ""))
    if not get(cfg, "launch.rdzv_endpoint") and addr in ("", "127.0.0.1", "localhost", "::1"):
        yield problem("launch-multinode", "launch.master_addr", addr, f"other nodes cannot reach a loopback address (launch.nnodes={nnodes})",
                      "the rank-0 node's network address", "launch.master_addr=<ip of node 0>")


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


def _user_deepspeed(cfg) -> dict | None:
    """The user's DeepSpeed JSON (launch.deepspeed=<path>) as a dict; None for presets or unreadable files."""
    ds = get(cfg, "launch.deepspeed")
    if not ds or not isinstance(ds, str) or ds in DS_PRESETS or not uses_deepspeed(cfg):
        return None
    try:
        data = json.loads(Path(ds).expanduser().read_text())
    except (OSError, ValueError):
        return None   # launch-deepspeed-config reports it
    return data if isinstance(data, dict) else None


def _fixed(value):
    """A number the user wrote into the DeepSpeed JSON (None for "auto" or absent)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@rule("launch-deepspeed-values", keys=["launch.deepspeed", "train.per_device_train_batch_size",
                                       "train.gradient_accumulation_steps", "train.bf16", "train.fp16", "train.optim"],
      bad=[["launch=deepspeed_z2", f"launch.deepspeed={_DS_EXAMPLES / 'ds_z2_fixed_batch4.json'}"],
           ["launch=deepspeed_z2", f"launch.deepspeed={_DS_EXAMPLES / 'ds_z2_fixed_batch4.json'}",
            "train.per_device_train_batch_size=4", "train.bf16=true"],
           ["launch=deepspeed_z3_offload", "train.optim=sgd"]],
      good=[["launch=deepspeed_z2", f"launch.deepspeed={_DS_EXAMPLES / 'ds_z2_fixed_batch4.json'}",
             "train.per_device_train_batch_size=4"], ["launch=deepspeed_z3_offload"], ["launch=deepspeed_z2", "train.optim=sgd"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def deepspeed_values(cfg, env):
    """Values written into a DeepSpeed JSON (instead of "auto") must agree with the train family, or the
    Trainer stops at start-up; a JSON with its own optimizer replaces train.optim."""
    from llmpipe.config.presets import deepspeed_path

    data = _user_deepspeed(cfg)
    ds = get(cfg, "launch.deepspeed")
    if data is None and uses_deepspeed(cfg) and ds in DS_PRESETS:
        data = json.loads(deepspeed_path(ds).read_text())
    if data is None:
        return
    micro, gas = get(cfg, "train.per_device_train_batch_size", 8), get(cfg, "train.gradient_accumulation_steps", 1)
    wanted = {"train_micro_batch_size_per_gpu": ("train.per_device_train_batch_size", micro),
              "gradient_accumulation_steps": ("train.gradient_accumulation_steps", gas),
              "train_batch_size": ("train.per_device_train_batch_size", micro * gas * world_size(cfg)),
              "gradient_clipping": ("train.max_grad_norm", get(cfg, "train.max_grad_norm", 1.0))}
    for field, (key, value) in wanted.items():
        mine = _fixed(data.get(field))
        if mine is not None and mine != value:
            yield problem("launch-deepspeed-values", key, get(cfg, key), f"the DeepSpeed config {ds} fixes {field}={mine},"
                          f" but this training gives {value}", f'"{field}": "auto" in the JSON (the Trainer fills it in)',
                          f'set {field} to "auto" in {ds}, or change {key}')
    for prec in ("bf16", "fp16"):
        enabled = (data.get(prec) or {}).get("enabled", "auto")
        if isinstance(enabled, bool) and enabled != bool(get(cfg, f"train.{prec}")):
            yield problem("launch-deepspeed-values", f"train.{prec}", bool(get(cfg, f"train.{prec}")),
                          f"the DeepSpeed config {ds} has {prec}.enabled={str(enabled).lower()}",
                          f'"{prec}": {{"enabled": "auto"}} in the JSON', f"train.{prec}={str(enabled).lower()}")
    optim = get(cfg, "train.optim", "adamw_torch")
    if data.get("optimizer") and optim not in ("adamw_torch", "adamw_torch_fused"):
        yield problem("launch-deepspeed-values", "train.optim", optim, f"the DeepSpeed config {ds} brings its own optimizer"
                      f" ({(data['optimizer'] or {}).get('type')}), which would replace train.optim",
                      "train.optim=adamw_torch with a DeepSpeed optimizer", "train.optim=adamw_torch, or launch=deepspeed_z3")


@rule("launch-zero3-save", keys=["launch.deepspeed"],
      bad=[["launch=deepspeed_z3", f"launch.deepspeed={_DS_EXAMPLES / 'ds_z3_no_gather.json'}"]],
      good=[["launch=deepspeed_z3"], ["launch=deepspeed_z2", f"launch.deepspeed={_DS_EXAMPLES / 'ds_z2_fixed_batch4.json'}"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def zero3_save(cfg, env):
    """Under ZeRO-3 every rank holds a slice of each weight: the trained model is only saved as a whole
    model when the JSON asks DeepSpeed to gather it on save."""
    data = _user_deepspeed(cfg)
    zero = (data or {}).get("zero_optimization") or {}
    if data is None or _fixed(zero.get("stage")) != 3:
        return
    if zero.get("stage3_gather_16bit_weights_on_model_save") is not True:
        yield problem("launch-zero3-save", "launch.deepspeed", get(cfg, "launch.deepspeed"),
                      "ZeRO-3 without stage3_gather_16bit_weights_on_model_save=true saves only per-rank shards, not a"
                      " model that merge/export/reload can use", '"stage3_gather_16bit_weights_on_model_save": true',
                      "add it to zero_optimization in the JSON, or launch=deepspeed_z3 (the shipped preset)")


_FSDP_OPTIONS = ("full_shard", "shard_grad_op", "offload", "auto_wrap")


@rule("launch-fsdp-options", keys=["launch.fsdp"],
      bad=[["launch=fsdp", "launch.fsdp=no_shard"], ["launch=fsdp", "launch.fsdp='full_shard shard_grad_op'"],
           ["launch=fsdp", "launch.fsdp='full_shard auto_wrp'"]],
      good=[["launch=fsdp"], ["launch=fsdp", "launch.fsdp='shard_grad_op offload auto_wrap'"]],
      env={"gpu_count": 2})
def fsdp_options(cfg, env):
    """launch.fsdp: one sharding strategy (full_shard or shard_grad_op) plus offload / auto_wrap."""
    value = get(cfg, "launch.fsdp")
    if not value or not uses_fsdp(cfg):
        return
    opts = str(value).replace(",", " ").split()
    if "no_shard" in opts:
        yield problem("launch-fsdp-options", "launch.fsdp", value, "no_shard keeps a full copy of the model on every rank,"
                      " which is DDP", "full_shard or shard_grad_op (+ offload, auto_wrap)", "launch=ddp")
    unknown = [o for o in opts if o not in _FSDP_OPTIONS + ("no_shard",)]
    if unknown:
        yield problem("launch-fsdp-options", "launch.fsdp", value, f"unknown option(s) {', '.join(unknown)}",
                      ", ".join(_FSDP_OPTIONS), "launch.fsdp='full_shard auto_wrap'")
    if len([o for o in opts if o in ("full_shard", "shard_grad_op")]) > 1:
        yield problem("launch-fsdp-options", "launch.fsdp", value, "names two sharding strategies",
                      "one of full_shard, shard_grad_op", "launch.fsdp='full_shard auto_wrap'")


@rule("launch-local-multigpu", keys=["launch.kind", "train.use_cpu"],
      bad=[["launch=local"]], good=[["launch=ddp"], ["launch=local", "train.use_cpu=true"]],
      env={"gpu_count": 2})
def local_multigpu(cfg, env):
    """One process on a machine with several visible GPUs makes the Trainer fall back to nn.DataParallel
    (slow, and unsupported by most of the stack): launch one rank per GPU, or show one GPU."""
    if launch_kind(cfg) == "local" and env.gpu_count > 1 and not get(cfg, "train.use_cpu"):
        yield problem("launch-local-multigpu", "launch.kind", "local", f"{env.gpu_count} GPUs are visible to a single"
                      " process, which the Trainer would drive through nn.DataParallel",
                      "launch=ddp (or deepspeed_*/fsdp) with one rank per GPU, or a single visible GPU",
                      f"launch=ddp launch.nproc_per_node={env.gpu_count}, or CUDA_VISIBLE_DEVICES=0")
