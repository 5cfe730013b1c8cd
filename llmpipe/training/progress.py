"""A compact progress line per logging step (instead of tqdm bars that flood logs)."""
from __future__ import annotations

import time
from typing import Callable

from transformers import TrainerCallback

EVAL_EVERY_S = 15      # a line every EVAL_EVERY_S seconds while an evaluation runs (none for a short one)


class ProgressCallback(TrainerCallback):
    """``step N/M  loss=...  (elapsed, eta)`` every ``train.logging_steps`` steps, and always at the last step:
    a run shorter than ``logging_steps`` still shows its final loss."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.t0 = time.time()
        self.t_first = None   # (step, time) when training began or resumed: the ETA is measured from there
        self.eval_started = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()
        self.t_first = (state.global_step, self.t0)
        self.log(f"training: {state.max_steps} steps")

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_log = True   # the final loss is shown even when logging_steps > the steps run
        return control

    def eta(self, step: int, total: int) -> str:
        if not self.t_first or step >= total or step <= self.t_first[0]:
            return ""
        per_step = (time.time() - self.t_first[1]) / (step - self.t_first[0])
        return f", eta {per_step * (total - step):.0f}s"

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        keys = [k for k in ("loss", "eval_loss", "learning_rate", "grad_norm") if k in logs]
        if not keys:
            return
        parts = [f"{k}={logs[k]:.4g}" for k in keys]
        elapsed = time.time() - self.t0
        self.log(f"step {state.global_step}/{state.max_steps}  " + "  ".join(parts)
                 + f"  ({elapsed:.0f}s{self.eta(state.global_step, state.max_steps)})")

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        """A long evaluation shows a line every EVAL_EVERY_S seconds: batch i/n, elapsed, eta."""
        now = time.time()
        if self.eval_started is None:
            self.eval_started, self.eval_batches, self.eval_said = now, 0, now
        self.eval_batches += 1
        if now - self.eval_said >= EVAL_EVERY_S and state.is_world_process_zero:
            self.eval_said = now
            total = len(eval_dataloader) if eval_dataloader is not None and hasattr(eval_dataloader, "__len__") \
                else None
            spent = now - self.eval_started
            if total:
                eta = spent / self.eval_batches * (total - self.eval_batches)
                self.log(f"evaluating: batch {self.eval_batches}/{total}  ({spent:.0f}s, eta {eta:.0f}s)")
            else:
                self.log(f"evaluating: batch {self.eval_batches}  ({spent:.0f}s)")

    def on_evaluate(self, args, state, control, **kwargs):
        self.eval_started = None

    on_predict = on_evaluate

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
    stopping = []
    if obj.train.early_stopping_steps is not None:   # as LLaMA-Factory: patience = evaluations without improvement
        from transformers import EarlyStoppingCallback   # of train.metric_for_best_model (pre-flight: both are set)

        stopping = [EarlyStoppingCallback(early_stopping_patience=int(obj.train.early_stopping_steps))]
        log(f"early stopping: after {obj.train.early_stopping_steps} evaluations without a better "
            f"{obj.train.metric_for_best_model}")
    from llmpipe.training.profiling import profiling_callbacks

    return [ProgressCallback(log), NonFiniteLossGuard(obj), *stopping, *profiling_callbacks(obj, log), *user]
