"""The reference stage under a distributed launch (issue 22): two ranks (torchrun, DDP on CPU with gloo) share the
scoring of the rows and gather them back in order, so the published reference log-probs equal those of a one-process
run exactly, including an odd row count (the last batch of one rank is padded and the pad is dropped)."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("torch")

DPO = ["+recipe=dpo_qwen", "model=tiny", "run.sample=false", "export.dir=null", "data.max_samples=11",
       "data.cutoff_len=96", "train.max_steps=1", "train.per_device_train_batch_size=2",
       "train.per_device_eval_batch_size=3", "train.eval_strategy=no", "train.logging_steps=1",
       "train.plot_loss=false", "pref.precompute_reference=true"]


def _columns(stage_dir: Path) -> dict[str, dict[str, list[float]]]:
    from datasets import load_from_disk

    return {split.name: load_from_disk(str(split)).to_dict() for split in sorted((stage_dir / "logps").iterdir())}


def test_two_ranks_score_the_same_reference_as_one(tmp_path, run_cli, lock_of):
    store = tmp_path / "store"
    (tmp_path / "two").mkdir()
    two = run_cli(tmp_path / "two", *DPO, "launch=ddp", cache=store)
    lock = lock_of(tmp_path / "two")
    assert lock["stages"]["reference"]["status"] == "ran"
    assert "reference: launching 2 ranks (torchrun" in two.stdout, two.stdout[-3000:]
    assert "sharded over 2 ranks" in two.stdout, two.stdout[-3000:]
    ref_dir = Path(lock["stages"]["reference"]["output"])
    sharded = _columns(ref_dir)

    (tmp_path / "one").mkdir()
    run_cli(tmp_path / "one", *DPO, "run.force=[reference]", cache=store)
    lock = lock_of(tmp_path / "one")
    assert lock["stages"]["reference"]["status"] == "ran"
    assert Path(lock["stages"]["reference"]["output"]) == ref_dir   # same fingerprint: launch is not an input
    single = _columns(ref_dir)

    assert set(single) == set(sharded) == {"train", "eval"}
    assert len(single["train"]["ref_chosen_logps"]) == 11
    for split, cols in single.items():
        assert cols.keys() == sharded[split].keys()
        for name, values in cols.items():
            assert len(values) == len(sharded[split][name]), (split, name)
            assert max(abs(a - b) for a, b in zip(values, sharded[split][name])) <= 1e-6, (split, name)
