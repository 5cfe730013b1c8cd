"""What the train stage hands the training backend: explicit values, no pipeline objects.

llmpipe.stages.train unpacks its stage context into a :class:`TrainJob`; nothing in llmpipe.training knows
about stages, the store or the runner.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class TrainJob:
    name: str                      # the train node's id (train, train.sft, ...): titles of plots
    obj: Any                       # the typed configuration of this train step (LlmpipeConfig)
    load_dir: Path                 # the load stage's folder: tokenized data, tokenizer/, source.json
    out: Path                      # write the outputs here (published atomically afterwards)
    work: Path                     # checkpoints: survives a crash, so a re-run resumes
    cache_root: Path               # the store (built-in models are built under it)
    job_dir: Path | None = None    # the Hydra job folder (train.output_dir links), when there is one
    adapter_dir: Path | None = None    # the adapt stage's folder (initial LoRA adapter/), with LoRA
    reward_dir: Path | None = None     # the train folder of a reward-model step (ppo.reward_model=step:<name>)
    reference_dir: Path | None = None  # the reference stage's folder (precomputed reference log-probs), dpo/kto
    log: Callable[[str], None] = print
    # how many jobs of this machine wait for this stage's output (their cores are idle meanwhile); None: unknown
    waiters: Callable[[], int] | None = None

    @property
    def initial_adapter(self) -> Path | None:
        return self.adapter_dir / "adapter" if self.adapter_dir is not None else None
