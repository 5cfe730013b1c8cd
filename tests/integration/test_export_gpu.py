"""Export on a GPU (export.device=auto): merge and GPTQ quantization run on CUDA, and the export reloads and
generates. Skipped without CUDA."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_merge_and_gptq_on_the_gpu(tmp_path):
    env = {**os.environ, "LLMPIPE_CACHE": str(tmp_path / "cache")}
    args = ["+recipe=demo", "data.dataset=demo_sft", "data.eval_dataset=demo_sft_eval",
            "run.sample=false", "train.max_steps=12", "data.max_samples=192", "train.eval_strategy=no",
            "export.device=auto", "export.quantization_bit=4", "export.quantization_dataset=demo_pt",
            "export.quantization_nsamples=16", "export.quantization_maxlen=128"]
    proc = subprocess.run([sys.executable, "-m", "llmpipe", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lock = yaml.safe_load(next((tmp_path / "outputs").rglob("llmpipe.lock.yaml")).read_text())
    merge = json.loads((Path(lock["stages"]["merge"]["output"]) / "merge.json").read_text())
    assert merge["device"] == "cuda"
    q = lock["stages"]["quantize"]["metrics"]
    assert q["generated_tokens"] > 0 and q["perplexity_quantized"] < 2 * q["perplexity_unquantized"]
    assert json.loads((tmp_path / "exports" / "demo" / "config.json").read_text())["quantization_config"]["bits"] == 4
