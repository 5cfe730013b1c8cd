"""The non-finite loss guard (llmpipe.training.guards): a NaN/inf loss or gradient norm in a log entry stops the
Trainer with a TrainingDiverged (a UserError that says why and what to do); PPO's own loop checks its losses
after each step, and turns sampling from NaN logits after an update into the same error."""
from __future__ import annotations

import math
import types

import pytest

pytest.importorskip("transformers")

from llmpipe.errors import UserError  # noqa: E402
from llmpipe.training.guards import NonFiniteLossGuard, TrainingDiverged, check_finite  # noqa: E402

CFG = types.SimpleNamespace(train=types.SimpleNamespace(learning_rate=1e30, max_grad_norm=0.0, fp16=True))


def _on_log(logs):
    control = types.SimpleNamespace(should_training_stop=False)
    NonFiniteLossGuard(CFG).on_log(None, types.SimpleNamespace(global_step=7), control, logs=logs)
    return control


@pytest.mark.parametrize("logs", [{"loss": math.nan}, {"loss": 1.0, "grad_norm": math.inf},
                                  {"train_loss": -math.inf}])
def test_non_finite_log_raises_a_user_error(logs):
    with pytest.raises(TrainingDiverged) as e:
        _on_log(logs)
    assert isinstance(e.value, UserError)
    msg = str(e.value)
    assert "step 7" in msg and "nothing is published" in msg
    assert "train.learning_rate (now 1e+30)" in msg and "train.max_grad_norm" in msg and "fp16" in msg


def test_finite_logs_pass():
    assert not _on_log({"loss": 2.5, "grad_norm": 0.3, "learning_rate": 1e-4, "eval_loss": math.nan}).should_training_stop
    assert not _on_log(None).should_training_stop
    check_finite({"loss": 1.0, "note": "text"}, 1, CFG)


def test_trainer_callbacks_include_the_guard():
    from methods_support import cfg_of

    from llmpipe.training.progress import trainer_callbacks

    assert any(isinstance(cb, NonFiniteLossGuard) for cb in trainer_callbacks(cfg_of(), log=lambda s: None))


def _ppo_loop(experience, loss: float):
    from llmpipe.training.ppo import PPOLoop

    loop = PPOLoop.__new__(PPOLoop)   # only what run() touches
    loop.cfg = types.SimpleNamespace(train=types.SimpleNamespace(learning_rate=1.0, max_grad_norm=1.0, fp16=False,
                                                                 logging_steps=1, save_strategy="no", save_steps=0))
    loop.ctx = types.SimpleNamespace(log=lambda s: None)
    loop.acc = types.SimpleNamespace(log=lambda values, step: None)   # the Accelerator's tracker logging
    loop.step, loop.steps, loop.batch, loop.history = 0, 3, 4, []
    loop.kl = types.SimpleNamespace(value=0.2, update=lambda kl, n: None)
    loop.scheduler = types.SimpleNamespace(get_last_lr=lambda: [1.0])
    loop.experience = experience
    loop.update = lambda *a: {"loss": loss, "policy_loss": loss, "value_loss": 0.0}
    return loop


def test_ppo_loop_stops_on_a_non_finite_loss():
    loop = _ppo_loop(lambda: (None,) * 6 + ({"reward": 0.0, "kl": 0.0},), math.nan)
    with pytest.raises(TrainingDiverged, match="step 1: loss=nan"):
        loop.run()
    assert len(loop.history) == 1


def test_ppo_sampling_from_nan_logits_after_an_update_is_divergence():
    calls = []

    def experience():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        return (None,) * 6 + ({"reward": 0.0, "kl": 0.0},)

    with pytest.raises(TrainingDiverged, match="step 2: sampling probabilities=nan"):
        _ppo_loop(experience, 1.0).run()
