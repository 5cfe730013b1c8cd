"""FSDP through the Trainer needs CUDA: on a CPU-only machine transformers/accelerate would silently train
plain DDP, so llmpipe refuses it before anything runs (exit 2, no traceback, nothing in the store). With a
GPU the same command really shards (tests/distributed/test_fsdp_gpu.py)."""
from __future__ import annotations


def test_fsdp_on_cpu_is_refused_before_anything_runs(tmp_path, run_cli, quick):
    cache = tmp_path / "cache"
    proc = run_cli(tmp_path, *quick, "launch=fsdp", cache=cache, check=False, env={"LLMPIPE_GPU_COUNT": "0"})
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "launch-fsdp-cuda" in text or "FSDP through the Trainer needs CUDA" in text, text[-3000:]
    assert "silently run as DDP" in text and "launch=deepspeed_z3" in text
    assert "Traceback" not in text
    assert not (cache / "train").exists() and not (tmp_path / "outputs").exists()


def test_fsdp_with_cpu_training_on_a_gpu_machine_is_refused_too(tmp_path, run_cli, quick):
    proc = run_cli(tmp_path, *quick, "launch=fsdp", "train.use_cpu=true", cache=tmp_path / "cache", check=False,
                   env={"LLMPIPE_GPU_COUNT": "2"})
    assert proc.returncode == 2 and "with train.use_cpu=true it would silently run as DDP" in proc.stdout + proc.stderr
