"""Saving the trained model from spawned ranks: every rank joins the save (DeepSpeed ZeRO-3 and FSDP gather
the sharded weights collectively), only the main process writes, and the folder holds the same files as a
local run's (the Trainer's extra training_args.bin is dropped)."""
from __future__ import annotations

from pathlib import Path


def is_spawned(trainer) -> bool:
    """True under llmpipe.launch (several ranks, or DeepSpeed/FSDP even with one)."""
    return (trainer.args.world_size > 1 or bool(getattr(trainer, "is_deepspeed_enabled", False))
            or bool(getattr(trainer, "is_fsdp_enabled", False)))


def save_gathered(trainer, path: Path) -> bool:
    """Save the whole model into ``path`` from all ranks; True on the rank that wrote it (global rank 0)."""
    trainer.save_model(str(path))
    if not trainer.is_world_process_zero():
        return False
    (Path(path) / "training_args.bin").unlink(missing_ok=True)
    return True
