"""A resume that passes over an incomplete checkpoint (a save cut short) says so, and says where training starts
instead: the Trainer stages (training.causal.complete_checkpoint) and PPO (training.ppo_checkpoint.resume)."""
from __future__ import annotations

import types

import pytest

pytest.importorskip("torch")


def _checkpoints(root, complete=(), partial=()):
    for step in (*complete, *partial):
        (root / f"checkpoint-{step}").mkdir(parents=True)
    for step in complete:
        (root / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")


def test_only_incomplete_checkpoints_start_over_and_say_so(tmp_path):
    from llmpipe.training.causal import complete_checkpoint

    _checkpoints(tmp_path, partial=(10,))
    said: list[str] = []
    assert complete_checkpoint(tmp_path, said.append) is None
    assert said == ["checkpoint-10 is incomplete (no trainer_state.json; a save was cut short): starting over"]


def test_an_incomplete_newer_checkpoint_is_named_and_the_older_one_resumed(tmp_path):
    from llmpipe.training.causal import complete_checkpoint

    _checkpoints(tmp_path, complete=(5, 10), partial=(3, 15, 20))
    said: list[str] = []
    assert complete_checkpoint(tmp_path, said.append) == str(tmp_path / "checkpoint-10")
    assert said == ["checkpoint-15, checkpoint-20 are incomplete (no trainer_state.json; a save was cut short): "
                    "resuming from checkpoint-10 instead"]
    said.clear()
    assert complete_checkpoint(tmp_path / "none", said.append) is None and said == []


def test_ppo_incomplete_checkpoint_is_reported(tmp_path):
    from llmpipe.training.ppo_checkpoint import resume

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ppo-4.pt.tmp").write_bytes(b"cut")
    said: list[str] = []
    resume(types.SimpleNamespace(ctx=types.SimpleNamespace(work=tmp_path, log=said.append)))
    assert said == ["ppo-4.pt.tmp is incomplete (a save was cut short): starting over"]
