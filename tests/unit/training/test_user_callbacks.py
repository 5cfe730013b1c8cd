"""train.callbacks reach the Trainer: instantiated through the safe path, after llmpipe's progress line."""
from __future__ import annotations

from types import SimpleNamespace

import pytest


def _obj(callbacks):
    return SimpleNamespace(train=SimpleNamespace(callbacks=callbacks, early_stopping_steps=None))


def test_user_callbacks_are_instantiated_with_their_arguments():
    from transformers import EarlyStoppingCallback

    from llmpipe.training.progress import ProgressCallback, trainer_callbacks

    lines = []
    cbs = trainer_callbacks(_obj([{"_target_": "transformers.EarlyStoppingCallback", "early_stopping_patience": 2}]),
                            lines.append)
    assert isinstance(cbs[0], ProgressCallback)
    mine = [cb for cb in cbs if isinstance(cb, EarlyStoppingCallback)]
    assert len(mine) == 1 and mine[0].early_stopping_patience == 2
    assert any("EarlyStoppingCallback" in ln for ln in lines)


def test_a_target_that_is_no_callback_is_refused():
    from llmpipe.safety import UnsafeTargetError
    from llmpipe.training.progress import trainer_callbacks

    with pytest.raises(UnsafeTargetError):
        trainer_callbacks(_obj([{"_target_": "transformers.testing_utils.run_command", "command": ["true"]}]), print)
