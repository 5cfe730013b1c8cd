"""A memory-efficient optimizer end to end through the real command line (`python -m llmpipe +recipe=demo
model=tiny ...`): the train stage announces and uses the optimizer, the held-out loss falls, and the trained
model is published; a method combination that cannot work is refused before anything runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

QUICK = ["+recipe=demo", "data.dataset=demo_sft", "data.eval_dataset=demo_sft_eval",
         "model=tiny", "run.sample=false", "export.dir=null", "data.max_samples=64",
         "train.max_steps=8", "train.per_device_train_batch_size=8", "train.save_strategy=no",
         "train.logging_steps=4", "train.finetuning_type=full", "train.learning_rate=1e-3"]


def cli(cwd: Path, *args: str, cache: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMPIPE_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "llmpipe", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    shared = os.environ.get("LLMPIPE_BUILTIN_CACHE")
    if shared:
        (Path(shared) / "models").mkdir(parents=True, exist_ok=True)
        (root / "models").symlink_to(Path(shared) / "models")
    return root


def test_layerwise_galore_trains_through_the_cli(tmp_path, cache):
    """(BAdam, Adam-mini and the others run in the real Trainer in tests/unit/training/test_methods_optimizers.py.)"""
    pytest.importorskip("galore_torch")   # the `methods` extra
    from transformers import AutoModelForCausalLM

    proc = cli(tmp_path, *QUICK, "galore=layerwise", "galore.rank=8", cache=cache)
    assert "optimizer: GaLore rank 8 layer-wise (all)" in proc.stdout
    lock = next((tmp_path / "outputs").rglob("llmpipe.lock.yaml"))
    train = yaml.safe_load(lock.read_text())["stages"]["train"]
    assert train["metrics"]["eval_loss"] < train["metrics"]["eval_loss_initial"], train["metrics"]
    AutoModelForCausalLM.from_pretrained(Path(train["output"]) / "model")


def test_impossible_combination_is_refused_before_running(tmp_path, cache):
    proc = cli(tmp_path, "+recipe=demo", "model=tiny", "badam.use_adam_mini=true", cache=cache, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    out = proc.stdout + proc.stderr
    assert "badam.use_adam_mini" in out and "train.finetuning_type=full" in out and not (tmp_path / "outputs").exists()
