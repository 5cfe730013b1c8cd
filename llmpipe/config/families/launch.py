"""Launch family (``launch.*``): how training processes are started (local, DDP, DeepSpeed, FSDP)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from llmpipe.config.meta import param


@dataclass
class LaunchConfig:
    kind: str = param(
        "local", "Launcher: local (one process), ddp (torchrun), deepspeed (torchrun + DeepSpeed), fsdp"
        " (torchrun + torch FSDP), ray (Ray Train workers, DDP; launch.ray_*).",
        choices=("local", "ddp", "deepspeed", "fsdp", "ray"),
    )
    launcher: str = param(
        "torchrun", "Program that starts the ranks: torchrun (every kind) or deepspeed (DeepSpeed's own"
        " launcher; launch.kind=deepspeed only).", choices=("torchrun", "deepspeed"),
    )
    nproc_per_node: int = param(1, "Processes (ranks) per node.", ge=1)
    nnodes: int = param(1, "Number of nodes.", ge=1)
    node_rank: int = param(0, "Rank of this node.", ge=0)
    master_addr: str = param("127.0.0.1", "Address of the rank-0 node.", seed="master_addr")
    master_port: int = param(29500, "Port of the rank-0 node.", seed="master_port", ge=1, le=65535)
    rdzv_endpoint: Optional[str] = param(None, "torchrun rendezvous endpoint host:port (multi-node).")
    ddp_timeout: int = param(1800, "Timeout of collective operations, in seconds.", seed="ddp_timeout", ge=1)
    ddp_backend: Optional[str] = param(
        None, "torch.distributed backend (unset = nccl on GPU, gloo on CPU).", seed="ddp_backend",
        choices=("nccl", "gloo", "mpi", "ccl", "hccl", "cncl", "mccl"),
    )
    deepspeed: Optional[str] = param(
        None, "DeepSpeed config: a shipped preset (z0, z2, z3, z3_offload) or a path to a JSON file.",
        seed="deepspeed",
    )
    fsdp: Optional[str] = param(
        None, "torch FSDP options, space-separated: full_shard | shard_grad_op | no_shard [offload] [auto_wrap].",
        seed="fsdp",
    )
    fsdp_config: Dict[str, Any] = param(
        None, "Extra FSDP settings (transformers fsdp_config), e.g. {transformer_layer_cls_to_wrap: [...]}"
        " (command line: ++launch.fsdp_config={...}).",
        seed="fsdp_config", default_factory=dict,
    )
    local_rank: int = param(
        -1, "Local rank of this process (set by the launcher; -1 = not distributed).", seed="local_rank", ge=-1,
        effect="none: the launcher gives each rank LOCAL_RANK in its environment, which is what llmpipe reads",
        volatile=True,
    )
    # Ray Train (launch.kind=ray): the train stage's ranks are Ray Train workers (llmpipe.launch.ray_train)
    ray_num_workers: int = param(1, "Ray Train workers (ranks) of launch.kind=ray.", seed="ray_num_workers", ge=1)
    ray_run_name: Optional[str] = param(
        None, "Ray Train run name (RunConfig.name; unset = llmpipe-<stage fingerprint>).", seed="ray_run_name",
    )
    ray_storage_path: Optional[str] = param(
        None, "Where Ray Train keeps the run's state (RunConfig.storage_path; unset = the stage's work folder).",
        seed="ray_storage_path",
    )
    ray_storage_filesystem: Optional[str] = param(
        None, "Filesystem of launch.ray_storage_path: s3 or gs (pyarrow; unset = local paths).",
        seed="ray_storage_filesystem", choices=("s3", "gs", "gcs"),
    )
    ray_resources_per_worker: Dict[str, Any] = param(
        None, "Resources of each Ray worker, e.g. {CPU: 2, GPU: 1} (ScalingConfig; unset = Ray's default: one CPU,"
        " or one GPU when training on GPUs).", seed="resources_per_worker", default_factory=dict,
    )
    ray_placement_strategy: str = param(
        "PACK", "How Ray places the workers on the cluster's nodes (ScalingConfig.placement_strategy).",
        seed="placement_strategy", choices=("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
    )
    ray_init_kwargs: Dict[str, Any] = param(
        None, "Arguments of ray.init (address, num_cpus, runtime_env, ...); unset = a local Ray started for the"
        " run and shut down after it.", seed="ray_init_kwargs", default_factory=dict,
    )
