"""FSDP for real: 2 GPU ranks through torchrun + transformers/accelerate (FSDP2), the tiny model's LoRA
adapter saved whole and reloadable. Skipped without two CUDA devices."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                                 reason="needs 2 CUDA GPUs")]


@pytest.mark.parametrize("fsdp", ["full_shard auto_wrap", "shard_grad_op auto_wrap"])
def test_fsdp_two_gpus(tmp_path, dist_cache, run_cli, quick, lock_of, fsdp):
    proc = run_cli(tmp_path, *quick, "launch=fsdp", f"launch.fsdp='{fsdp}'", cache=dist_cache)
    assert "launching 2 ranks (torchrun" in proc.stdout and "FSDP" in proc.stdout
    lock = lock_of(tmp_path / "outputs")
    out = Path(lock["stages"]["train"]["output"])
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 3
