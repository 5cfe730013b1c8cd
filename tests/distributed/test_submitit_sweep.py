"""A Hydra sweep through the submitit launcher (``submitit_local``: the Slurm launcher's local twin), where
every job launches its own 2-process DDP training. The same command with ``hydra/launcher=submitit_slurm``
runs on a cluster (docs/scaling.md)."""
from __future__ import annotations

import csv

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'llmpipe[distributed]'")


def test_submitit_local_sweep_each_job_trains_on_two_ranks(tmp_path, dist_cache, run_cli, quick):
    args = [a for a in quick if not a.startswith("train.max_steps")]
    proc = run_cli(tmp_path, "-m", *args, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=20",
                   "hydra.sweep.subdir=${hydra.job.num}", "run.name=scaling", "launch=ddp", "train.max_steps=2", "lora.rank=4,8", cache=dist_cache)
    sweeps = list((tmp_path / "multirun" / "scaling").iterdir())
    assert len(sweeps) == 1, sweeps
    rows = list(csv.DictReader((sweeps[0] / "results.csv").open()))
    assert sorted(r["overrides"].split("lora.rank=")[1].split(",")[0] for r in rows) == ["4", "8"], rows
    assert all(float(r["value"]) > 0 for r in rows)
    logs = sorted(sweeps[0].glob(".submitit/*/*_log.out"))
    assert len(logs) == 2, logs
    for log in logs:
        text = log.read_text()
        assert "launching 2 ranks (torchrun, DDP)" in text and "2 ranks (ddp) started" in text, text[-3000:]
        assert "train: ran" in text
    assert "best" in proc.stdout.lower() or "results" in proc.stdout.lower(), proc.stdout[-2000:]
