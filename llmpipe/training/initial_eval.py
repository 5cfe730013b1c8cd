"""The untrained model's held-out loss under DeepSpeed. ``Trainer.evaluate()`` before ``train()`` would build
a DeepSpeed engine without an optimizer, and ``train()`` then fails (``'NoneType' object has no attribute
'backward'``); so under DeepSpeed the first evaluation runs inside ``train()`` (``eval_on_start``), with the
training engine, and is remembered like the in-process one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback


class _RememberFirstEval(TrainerCallback):
    def __init__(self, path: Path, log: Callable[[str], None]):
        self.path, self.log = Path(path), log

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.path.exists() or not metrics or "eval_loss" not in metrics:
            return
        if state.is_world_process_zero:
            self.path.write_text(json.dumps({"eval_loss": metrics["eval_loss"]}))
            self.log(f"held-out loss before training: {metrics['eval_loss']:.4f}")


def defer_initial_eval(trainer, path: Path, log: Callable[[str], None]) -> bool:
    """Under DeepSpeed: evaluate at the start of train() and write ``path`` then; True when deferred."""
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return False
    trainer.args.eval_on_start = True
    trainer.add_callback(_RememberFirstEval(path, log))
    return True
