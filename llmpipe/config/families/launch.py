"""Launch family (``launch.*``): how training processes are started (local, DDP, DeepSpeed, FSDP)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from llmpipe.config.meta import param


@dataclass
class LaunchConfig:
    kind: str = param(
        "local", "Launcher: local (one process), ddp (torchrun), deepspeed (torchrun + DeepSpeed), fsdp"
        " (torchrun + torch FSDP).", choices=("local", "ddp", "deepspeed", "fsdp"),
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
