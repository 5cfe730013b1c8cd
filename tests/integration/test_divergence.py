"""A train stage whose loss diverges (a huge learning rate) stops with a clear error and publishes nothing, so
that no later stage (merge, evaluate) is fed NaN weights and a rerun does not find it cached as complete."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

from test_methods import run, store  # noqa: E402,F401  (the in-process pipeline and its store fixture)


def test_divergent_training_fails_and_publishes_nothing(store):  # noqa: F811
    from llmpipe.pipeline.runner import StageFailed
    from llmpipe.training.guards import TrainingDiverged

    with pytest.raises(StageFailed) as e:
        run(store, "train.finetuning_type=lora", "train.learning_rate=1e30", "train.max_steps=4")
    assert e.value.node_id == "train" and isinstance(e.value.cause, TrainingDiverged)
    assert "training diverged at step" in str(e.value.cause) and "train.learning_rate" in str(e.value.cause)
    published = [p for p in (store / "train").iterdir() if not p.name.endswith((".work", ".lock", ".staging"))]
    assert not published, published
