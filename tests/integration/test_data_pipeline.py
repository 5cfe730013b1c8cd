"""The data parameters through the real CLI: neat-packed SFT with an evaluation on each dataset and a
tokenized_path that a forced re-load reads back; streamed pre-training with a val_size cut from the
stream; a broken data file and a template that does not fit the tokenizer fail with clear messages."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

BASE = ["+recipe=demo", "data.dataset=demo_sft", "data.eval_dataset=demo_sft_eval",
        "model.name_or_path=builtin:tiny-random", "run.sample=false", "export.dir=null",
        "train.max_steps=3", "train.eval_strategy=no"]


def cli(cwd: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMPIPE_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "llmpipe", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def last_lock(cwd: Path) -> dict:
    lock = sorted((cwd / "outputs").rglob("llmpipe.lock.yaml"), key=lambda p: p.stat().st_mtime)[-1]
    return yaml.safe_load(lock.read_text())


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_neat_packing_eval_on_each_dataset_and_tokenized_path(tmp_path, cache):
    tok_dir = tmp_path / "tokenized"
    args = [*BASE, "data.max_samples=48", "data.neat_packing=true", "data.eval_dataset='demo_sft_eval,demo_sft_zh_eval'",
            "data.eval_on_each_dataset=true", f"data.tokenized_path={tok_dir}"]
    out = ok(cli(tmp_path, cache, *args)).stdout
    assert "neat packing train: 48 examples ->" in out and f"tokenized data saved to data.tokenized_path={tok_dir}" in out
    lock = last_lock(tmp_path)
    m = lock["stages"]["train"]["metrics"]
    assert {"eval_loss", "eval_demo_sft_eval_loss", "eval_demo_sft_zh_eval_loss"} <= set(m)
    load_out = Path(lock["stages"]["load"]["output"])
    report = json.loads((load_out / "data_report.json").read_text())
    assert report["packing"]["train"]["neat"] and report["packing"]["train"]["examples"] == 48
    assert sorted(p.name for p in (load_out / "eval_each").iterdir()) == ["demo_sft_eval", "demo_sft_zh_eval"]
    assert (tok_dir / "llmpipe-tokenized.json").is_file()
    again = ok(cli(tmp_path, cache, *args, "run.force=[load]")).stdout
    assert "tokenized data read from data.tokenized_path" in again
    assert last_lock(tmp_path)["stages"]["train"]["status"] == "cached"  # the same data: nothing else re-runs


def test_streamed_pretraining(tmp_path, cache):
    args = [*BASE, "train.stage=pt", "data.dataset=demo_pt", "data.eval_dataset=null", "data.streaming=true",
            "data.val_size=16", "data.cutoff_len=64", "data.buffer_size=64", "train.max_steps=4"]
    out = ok(cli(tmp_path, cache, *args)).stdout
    assert "streaming demo_pt (shuffle buffer 64)" in out
    lock = last_lock(tmp_path)
    load_out = Path(lock["stages"]["load"]["output"])
    assert (load_out / "stream.json").is_file() and not (load_out / "train").exists()
    assert lock["stages"]["train"]["metrics"]["global_step"] == 4 and "eval_loss" in lock["stages"]["train"]["metrics"]


def test_bad_file_fails_the_load_stage_cleanly(tmp_path, cache):
    data = tmp_path / "mydata"
    data.mkdir()
    (data / "broken.json").write_text('[{"instruction": "a", "output": "b"},\n {"instruction": "c" "output": 1}]')
    (data / "dataset_info.json").write_text(json.dumps({"broken": {"file_name": "broken.json"}}))
    proc = cli(tmp_path, cache, *BASE, f"data.dataset_dir={data}", "data.dataset=broken", "data.eval_dataset=null")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "stage load failed: dataset 'broken':" in proc.stderr and "is not valid JSON" in proc.stderr


def test_template_that_does_not_fit_fails_preflight(tmp_path, cache):
    proc = cli(tmp_path, cache, "+recipe=demo", "data.template=gemma", "data.tool_format=glm9")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    text = proc.stdout + proc.stderr
    assert "data.template = 'gemma'" in text and "'<start_of_turn>'" in text and "data.tool_format = 'glm9'" in text
