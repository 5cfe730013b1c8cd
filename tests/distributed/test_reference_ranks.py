"""The reference stage under a distributed launch (issue 22): two ranks (torchrun, DDP on CPU with gloo) share the
scoring of the rows and gather them back in order, so the published reference log-probs equal those of a one-process
run exactly, including an odd row count (the last batch of one rank is padded and the pad is dropped). The run is
shorter than an epoch, so the stage scores the rows its steps read: one step on two ranks of 2 rows reads the same
4 rows as two steps of one process, and the two-rank training finds every row it reads scored."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("torch")

DPO = ["+recipe=dpo_qwen", "model=tiny", "run.sample=false", "export.dir=null", "data.max_samples=11",
       "data.cutoff_len=96", "train.per_device_train_batch_size=2",
       "train.per_device_eval_batch_size=3", "train.eval_strategy=no", "train.logging_steps=1",
       "train.plot_loss=false", "pref.precompute_reference=true"]


def _columns(stage_dir: Path) -> dict[str, dict[str, list[float]]]:
    from datasets import load_from_disk

    return {split.name: load_from_disk(str(split)).to_dict() for split in sorted((stage_dir / "logps").iterdir())}


def test_two_ranks_score_the_same_reference_as_one(tmp_path, run_cli, lock_of):
    import math

    store = tmp_path / "store"
    (tmp_path / "two").mkdir()
    two = run_cli(tmp_path / "two", *DPO, "launch=ddp", "train.max_steps=1", cache=store)
    lock = lock_of(tmp_path / "two")
    assert lock["stages"]["reference"]["status"] == "ran" and lock["stages"]["train"]["status"] == "ran"
    assert "reference: launching 2 ranks (torchrun" in two.stdout, two.stdout[-3000:]
    assert "sharded over 2 ranks" in two.stdout, two.stdout[-3000:]
    assert "the 4 of 11 train rows that the first 1 steps read" in two.stdout, two.stdout[-3000:]
    sharded = _columns(Path(lock["stages"]["reference"]["output"]))

    (tmp_path / "one").mkdir()
    run_cli(tmp_path / "one", *DPO, "train.max_steps=2", cache=store)
    lock = lock_of(tmp_path / "one")
    assert lock["stages"]["reference"]["status"] == "ran"
    single = _columns(Path(lock["stages"]["reference"]["output"]))

    assert set(single) == set(sharded) == {"train", "eval"}
    assert len(single["train"]["ref_chosen_logps"]) == 11
    assert sum(not math.isnan(v) for v in single["train"]["ref_chosen_logps"]) == 4
    for split, cols in single.items():
        assert cols.keys() == sharded[split].keys()
        for name, values in cols.items():
            other = sharded[split][name]
            assert len(values) == len(other), (split, name)
            assert [math.isnan(v) for v in values] == [math.isnan(v) for v in other], (split, name)
            assert max(abs(a - b) for a, b in zip(values, other) if not math.isnan(a)) <= 1e-6, (split, name)
