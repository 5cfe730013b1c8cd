"""What a stage kind declares: its name, code version, the config it reads, and how to run it.

llmpipe.stages.kinds declares every kind with the function that runs it; the plan and the runner only see
this record. Stage modules import torch and the backends inside their functions, so declaring a kind never does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig


@dataclass(frozen=True)
class StageKind:
    name: str                    # load, adapt, train, merge, export, ...
    version: str                 # bump when the bytes a stage produces change
    reads: tuple[str, ...]       # config families or paths this stage reads
    run: Callable[["StageContext"], dict]   # executes the stage (its module imports heavy libraries lazily)
    cached: bool = True          # False: runs every time (e.g. copying to an external folder)
    distributed: bool = False    # True: spawned under torchrun/deepspeed when launch.kind != local (llmpipe.launch)
    ignores: tuple[str, ...] = ()  # paths inside `reads` that do not change this stage's output
    doc: str = ""


@dataclass
class StageContext:
    node_id: str
    kind: StageKind
    cfg: DictConfig              # the effective config of this node (chained stages apply overrides)
    obj: Any                     # typed view of cfg (LlmpipeConfig)
    inputs: dict[str, Path]      # role -> published folder of an upstream node
    out: Path                    # write outputs here (published atomically afterwards)
    work: Path                   # scratch space that survives a crash (checkpoints)
    fingerprint: str
    cache_root: Path
    job_dir: Path | None
    secret_env: dict[str, str] = field(default_factory=dict)
    log: Callable[[str], None] = print
    # how many jobs of this machine wait for this stage's output right now (a sweep's jobs that share it): they
    # leave their cores idle, so the stage may use them (llmpipe.training.ref_logprobs)
    waiters: Callable[[], int] = lambda: 0

    def input(self, role: str) -> Path:
        if role not in self.inputs:
            raise KeyError(f"stage {self.node_id} has no input '{role}' (has {sorted(self.inputs)})")
        return self.inputs[role]


KINDS: dict[str, StageKind] = {}


def register(kind: StageKind) -> StageKind:
    KINDS[kind.name] = kind
    return kind
