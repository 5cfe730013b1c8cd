"""Guards that stop a train stage which can no longer produce a usable model.

A non-finite training loss or gradient norm (a learning rate far too high, an overflow in fp16, a bad row)
leaves the weights NaN: every later step is NaN too, and a stage that finished anyway would be published and
cached as complete, and the merge or evaluation after it would fail on NaN logits. The guard ends the stage at
the first logged non-finite value with a :class:`TrainingDiverged` (a ``UserError``: the user sees why and what
to do, without a traceback), so the runner publishes nothing.

The Trainer-based stages (pt, sft, rm, dpo, kto) get :class:`NonFiniteLossGuard` among their callbacks
(``training.progress.trainer_callbacks``); PPO's own loop calls :func:`check_finite` after each step.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from transformers import TrainerCallback

from llmpipe.errors import UserError

# the values watched in a log entry: the running loss, the final mean loss, the gradient norm before clipping
WATCHED = ("loss", "train_loss", "grad_norm")


class TrainingDiverged(UserError):
    """The loss or gradient norm became NaN or infinite: the model's weights are no longer usable."""


def _non_finite(values: Mapping[str, Any], keys) -> dict[str, float]:
    bad = {}
    for key in keys:
        v = values.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v):
            bad[key] = float(v)
    return bad


def diverged_message(bad: Mapping[str, float], step: int, cfg: Any) -> str:
    found = ", ".join(f"{k}={v}" for k, v in bad.items())
    t = cfg.train
    hints = [f"lower train.learning_rate (now {t.learning_rate:g})"]
    if not t.max_grad_norm:
        hints.append("clip gradients (train.max_grad_norm=1.0)")
    if getattr(t, "fp16", False):
        hints.append("train in bf16 or fp32 instead of fp16 (fp16 overflows)")
    hints.append("check the training data for broken rows")
    return (f"training diverged at step {step}: {found}. The model's weights are no longer usable, so the stage "
            f"stops here and nothing is published. What to do: {'; '.join(hints)}.")


def check_finite(values: Mapping[str, Any], step: int, cfg: Any, metrics=WATCHED) -> None:
    """Raise :class:`TrainingDiverged` if any of ``metrics`` in ``values`` is NaN or infinite."""
    bad = _non_finite(values, metrics)
    if bad:
        raise TrainingDiverged(diverged_message(bad, step, cfg))


class NonFiniteLossGuard(TrainerCallback):
    """Stops training at the first log entry whose loss or gradient norm is not finite, and raises
    :class:`TrainingDiverged` (every rank sees the same gathered values, so all of them stop)."""

    def __init__(self, cfg: Any):
        self.cfg = cfg

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        bad = _non_finite(logs, WATCHED)
        if bad:
            control.should_training_stop = True
            raise TrainingDiverged(diverged_message(bad, state.global_step, self.cfg))
