"""Padding-free batches and the label-only LM head through the real command line: a default SFT run and a
DPO run (both padding-free, the SFT one with the label-only head, the DPO one with shared prompts) log the same losses (and DPO the same summed
log-probs), step by step, as the
same runs with padded batches (train.padding_free=false, and train.compute_accuracy=true for the head),
and the held-out loss still falls."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_methods_cli import cache, cli  # noqa: F401  (cache is a fixture)

pytestmark = pytest.mark.slow

SFT = ["+recipe=demo", "data.dataset=demo_sft", "data.eval_dataset=demo_sft_eval",
       "model=tiny", "run.sample=false", "export.dir=null", "data.max_samples=64",
       "train.max_steps=8", "train.per_device_train_batch_size=8", "train.save_strategy=no", "train.logging_steps=2",
       "train.learning_rate=3e-3"]
DPO = ["+recipe=dpo_qwen", "model=tiny", "data.max_samples=32", "data.cutoff_len=128", "train.max_steps=6",
       "train.per_device_train_batch_size=4", "train.eval_strategy=no", "train.save_steps=1000",
       "train.logging_steps=2", "train.learning_rate=2e-3", "train.warmup_steps=0"]


def _train(run_dir: Path) -> tuple[dict, dict]:
    lock = yaml.safe_load(next((run_dir / "outputs").rglob("llmpipe.lock.yaml")).read_text())
    out = Path(lock["stages"]["train"]["output"])
    history = json.loads((out / "log_history.json").read_text())
    keys = ("loss", "logps/chosen", "logps/rejected")   # DPO also logs the summed log-probs, not only differences
    logged = {(h["step"], k): h[k] for h in history for k in keys if k in h}
    return logged, lock["stages"]["train"]["metrics"]


@pytest.mark.parametrize("base, padded, head", [(SFT, ["train.padding_free=false", "train.compute_accuracy=true"],
                                                 "LM head over every position"),
                                                (DPO, ["train.padding_free=false"], None)], ids=["sft", "dpo"])
def test_padding_free_runs_log_the_padded_losses(tmp_path, cache, base, padded, head):  # noqa: F811
    free_dir, pad_dir = tmp_path / "free", tmp_path / "padded"
    free_dir.mkdir(), pad_dir.mkdir()
    free = cli(free_dir, *base, cache=cache)
    pad = cli(pad_dir, *base, *padded, cache=cache)
    assert "padding-free batches" in free.stdout and "padding-free batches" not in pad.stdout
    if head:
        assert head not in free.stdout and head in pad.stdout
    else:   # DPO: each pair's prompt runs once in the padding-free row (llmpipe.training.shared_prompts)
        assert "shared prompts" in free.stdout and "shared prompts" not in pad.stdout
    (free_loss, free_m), (pad_loss, pad_m) = _train(free_dir), _train(pad_dir)
    assert free_loss.keys() == pad_loss.keys() and len(free_loss) >= 3
    for key, value in pad_loss.items():
        assert free_loss[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (key, free_loss, pad_loss)
    if "eval_loss" in free_m:
        assert free_m["eval_loss"] == pytest.approx(pad_m["eval_loss"], rel=1e-4)
        assert free_m["eval_loss"] < free_m["eval_loss_initial"]
