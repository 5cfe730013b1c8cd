"""train.report_to=swanlab for real, offline: llmpipe opens the SwanLab run with the train.swanlab_* settings
(local mode, files in the stage output), transformers' SwanLabCallback logs the Trainer's losses into it, and
the API key never reaches a file."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("swanlab", reason="SwanLab is installed by `make install` (--no-deps: see the Makefile)")

from methods_support import X, cfg_of, micro_model


def test_two_steps_log_their_losses_to_swanlab_files(tmp_path, monkeypatch):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from llmpipe.training.metrics import point_trackers
    from llmpipe.training.swanlab_run import finish_run

    monkeypatch.chdir(tmp_path)
    for probe in ("HARDWARE", "RUNTIME", "REQUIREMENTS", "GIT", "MONITOR"):   # SwanLab's system probes: seconds
        monkeypatch.setenv(f"SWANLAB_PROBE_{probe}", "false")
    key = "swan-secret-key-0123456789"
    monkeypatch.setenv("SWANLAB_API_KEY", key)
    cfg = cfg_of("train.report_to=swanlab", "train.swanlab_project=llmpipe-test", "train.swanlab_run_name=two-steps")
    out = tmp_path / "out"
    rows = Dataset.from_dict({"input_ids": X.tolist(), "labels": X.tolist()})
    args = TrainingArguments(str(tmp_path / "ckpt"), max_steps=2, logging_steps=1, per_device_train_batch_size=2,
                             learning_rate=1e-2, report_to=["swanlab"], use_cpu=True, save_strategy="no",
                             run_name="two-steps")
    trainer = Trainer(model=micro_model(), args=args, train_dataset=rows)
    assert "SwanLab" in point_trackers(trainer, cfg, out / "tensorboard")
    trainer.train()
    finish_run()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and torch.isfinite(torch.tensor(losses)).all()
    runs = list((out / "swanlog").glob("run-*"))
    assert len(runs) == 1, list((out / "swanlog").iterdir())
    series = {}
    for log in runs[0].glob("logs/*/*.log"):
        points = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        series[log.parent.name] = [(p["index"], p["data"]) for p in points]
    # one of the logged series is the Trainer's loss, step by step
    assert [(1, pytest.approx(losses[0], rel=1e-4)), (2, pytest.approx(losses[1], rel=1e-4))] in series.values(), series
    record = next(runs[0].glob("run-*.swanlab")).read_bytes()   # the run's own record: project and name
    assert b"llmpipe-test" in record and b"two-steps" in record
    for f in (out / "swanlog").rglob("*"):
        if f.is_file():
            assert key.encode() not in f.read_bytes(), f
