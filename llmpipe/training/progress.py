"""A compact progress line per logging step (instead of tqdm bars that flood logs)."""
from __future__ import annotations

import time
from typing import Callable

from transformers import TrainerCallback


class ProgressCallback(TrainerCallback):
    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.t0 = time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()
        self.log(f"training: {state.max_steps} steps")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        keys = [k for k in ("loss", "eval_loss", "learning_rate", "grad_norm") if k in logs]
        if not keys:
            return
        parts = [f"{k}={logs[k]:.4g}" for k in keys]
        elapsed = time.time() - self.t0
        self.log(f"step {state.global_step}/{state.max_steps}  " + "  ".join(parts) + f"  ({elapsed:.0f}s)")

    def on_save(self, args, state, control, **kwargs):
        self.log(f"checkpoint at step {state.global_step}")


def trainer_callbacks(obj, log: Callable[[str], None]) -> list:
    """The callbacks of a Trainer: llmpipe's progress line, then the user's ``train.callbacks`` (instantiated
    through the one safe path: allowlisted modules, TrainerCallback subclasses only). The non-finite loss guard
    follows the progress line, so the step that diverged is shown before the stage stops."""
    from llmpipe.safety import instantiate_all
    from llmpipe.training.guards import NonFiniteLossGuard

    user = instantiate_all(obj.train.callbacks, point="train.callbacks") if obj.train.callbacks else []
    for cb in user:
        log(f"callback: {type(cb).__module__}.{type(cb).__qualname__}")
    return [ProgressCallback(log), NonFiniteLossGuard(obj), *user]
