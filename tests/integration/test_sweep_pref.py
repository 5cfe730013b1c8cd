"""The preference sweep of the issue through the real CLI: ``-m +recipe=dpo_qwen model=tiny lora.rank=4,8
pref.beta=0.05,0.5`` runs four jobs (shortened here), each returns its held-out preference loss and records
reward accuracy and margin; the sweep writes results.csv and results.png and names the best setting; shared
stages run once. The Optuna sweeper drives the same recipe."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from pref_support import cli

pytestmark = pytest.mark.slow

SHORT = ["train.max_steps=3", "data.max_samples=32", "train.eval_strategy=no", "data.cutoff_len=128",
         "train.logging_steps=1", "train.per_device_eval_batch_size=16"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("store")


def _results(cwd: Path) -> tuple[Path, list[dict]]:
    [path] = list((cwd / "multirun").rglob("results.csv"))
    with open(path) as f:
        return path.parent, list(csv.DictReader(f))


def test_rank_by_beta_sweep_reports_the_best_setting(tmp_path, cache):
    proc = cli(tmp_path, cache, "-m", "+recipe=dpo_qwen", "model=tiny", "lora.rank=4,8",
               "pref.beta=0.05,0.5", *SHORT)
    sweep_dir, rows = _results(tmp_path)
    assert len(rows) == 4
    assert {r["overrides"].split("lora.rank=")[1][:1] for r in rows} == {"4", "8"}
    for r in rows:
        assert r["objective"] == "eval_loss" and 0 < float(r["value"]) < 1.0   # held-out sigmoid DPO loss
        metrics = json.loads(r["metrics"])
        assert 0.0 <= metrics["train/eval_reward_accuracy"] <= 1.0
        assert "train/eval_reward_margin" in metrics
    assert (sweep_dir / "results.png").stat().st_size > 1000
    best = min(rows, key=lambda r: float(r["value"]))
    assert f"best (lowest eval_loss): {best['overrides']}" in proc.stdout
    locks = [yaml.safe_load(p.read_text()) for p in sweep_dir.rglob("llmpipe.lock.yaml")]
    ran = [k for lock in locks for k, v in lock["stages"].items() if v["status"] == "ran"]
    assert ran.count("train") == 4 and ran.count("adapt") <= 2 and ran.count("load") <= 1   # shared stages once
    assert ran.count("reference") == 1        # the reference log-probs: one computation for the four jobs


def test_optuna_sweeper_drives_the_same_recipe(tmp_path, cache):
    proc = cli(tmp_path, cache, "-m", "+recipe=dpo_qwen", "model=tiny",
               "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=minimize",
               "hydra.sweeper.sampler.seed=0", "pref.beta=interval(0.05,0.5)", *SHORT)
    _, rows = _results(tmp_path)
    assert len(rows) == 2 and all(float(r["value"]) > 0 for r in rows)
    assert "best (lowest eval_loss)" in proc.stdout
    [optimization] = list((tmp_path / "multirun").rglob("optimization_results.yaml"))
    assert "pref.beta" in optimization.read_text()
