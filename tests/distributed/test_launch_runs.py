"""Real 2-process training of the tiny model through the real CLI, on CPU with gloo: DDP (torchrun) and DeepSpeed
ZeRO-3 (through DeepSpeed's own launcher) produce the same artifacts as a local run, their models reload, and the
ranks are really there. (ZeRO-2 differs from ZeRO-3 only inside DeepSpeed: its config is checked in
tests/unit/launch; one launch of each costs about a minute on two cores, so the DeepSpeed launcher and ZeRO-3's
gather-on-save share one run.)

ZeRO-3 with CPU offload runs too when LLMPIPE_TEST_ALL_LAUNCHES=1 (offload compiles DeepSpeed's cpu_adam
the first time, about two minutes on two cores)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ALL = os.environ.get("LLMPIPE_TEST_ALL_LAUNCHES", "").strip().lower() in ("1", "true", "yes")
deepspeed = pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra: pip install 'llmpipe[distributed]'")


def _train_output(lock: dict) -> Path:
    return Path(lock["stages"]["train"]["output"])


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name not in ("stage.json",)}


def _adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, dist_cache, run_cli, quick, lock_of):
    cwd = tmp_path_factory.mktemp("local")
    run_cli(cwd, *quick, cache=dist_cache)
    return lock_of(cwd / "outputs")


@pytest.fixture(scope="module")
def ddp_run(local_run, tmp_path_factory, dist_cache, run_cli, quick, lock_of):
    """One 2-rank DDP (torchrun) run, checked by the DDP test and compared with the Ray workers' run; after the
    local run, whose load and adapt stages it reuses."""
    cwd = tmp_path_factory.mktemp("ddp")
    proc = run_cli(cwd, *quick, "launch=ddp", cache=dist_cache)
    return proc, _checked(lock_of(cwd / "outputs"), proc)


@pytest.fixture
def launched(tmp_path, dist_cache, run_cli, quick, lock_of):
    def _run(launch, *extra):
        proc = run_cli(tmp_path, *quick, f"launch={launch}", *extra, cache=dist_cache)
        return proc, _checked(lock_of(tmp_path / "outputs"), proc)
    return _run


def _checked(lock, proc):
    assert lock["status"] == "complete" and lock["stages"]["train"]["status"] == "ran"
    launcher = lock["config"]["launch"].get("launcher", "torchrun") if "config" in lock else "torchrun"
    assert f"launching 2 ranks ({launcher}" in proc.stdout and "2 ranks (" in proc.stdout, proc.stdout[-3000:]
    return lock


def _same_artifacts_as_local(lock, local_run):
    out, ref = _train_output(lock), _train_output(local_run)
    assert _files(out) == _files(ref), (sorted(_files(out)), sorted(_files(ref)))
    mine, theirs = _adapter_tensors(out), _adapter_tensors(ref)
    assert {k: tuple(v.shape) for k, v in mine.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    # LoRA B starts at zero: trained adapters have moved it (the ranks' gradients reached the saved weights)
    assert any(float(v.abs().max()) > 0 for k, v in mine.items() if "lora_B" in k)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and metrics["eval_loss"] < metrics["eval_loss_initial"] * 1.5
    history = json.loads((out / "log_history.json").read_text())
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3]


def test_ddp_two_ranks_same_artifacts_as_local(ddp_run, local_run):
    _, lock = ddp_run
    assert lock["stages"]["train"]["fingerprint"] != local_run["stages"]["train"]["fingerprint"]
    assert lock["stages"]["load"]["status"] == "cached"      # upstream stages are shared with the local run
    _same_artifacts_as_local(lock, local_run)
    # the adapter reloads on the base model and generates finite logits
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = json.loads((Path(lock["stages"]["load"]["output"]) / "source.json").read_text())["model"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(_train_output(lock) / "adapter"))
    logits = model(torch.tensor([[1, 2, 3, 4]])).logits
    assert torch.isfinite(logits).all()


def test_deepspeed_zero3_through_deepspeeds_own_launcher_merged_export_reloads(tmp_path, launched, local_run):
    export = tmp_path / "export"
    proc, lock = launched("deepspeed_z3", "launch.launcher=deepspeed", f"export.dir={export}")
    assert "launching 2 ranks (deepspeed, DeepSpeed z3)" in proc.stdout, proc.stdout[-3000:]
    _same_artifacts_as_local(lock, local_run)
    assert lock["stages"]["merge"]["status"] == "ran" and lock["stages"]["export"]["status"] == "ran"
    # the exported (merged) model reloads in a fresh transformers load and differs from the base model
    import torch
    from transformers import AutoModelForCausalLM

    base = json.loads((Path(lock["stages"]["load"]["output"]) / "source.json").read_text())["model"]
    trained, ref = AutoModelForCausalLM.from_pretrained(str(export)), AutoModelForCausalLM.from_pretrained(base)
    x = torch.tensor([[1, 2, 3, 4, 5]])
    a, b = trained(x).logits, ref(x).logits
    assert a.shape == b.shape and torch.isfinite(a).all()
    assert float((a - b).abs().max()) > 1e-4        # ZeRO-3 gathered the real trained weights on save


@pytest.mark.skipif(not ALL, reason="set LLMPIPE_TEST_ALL_LAUNCHES=1 (ZeRO-3 + CPU offload compiles cpu_adam, ~2 min)")
def test_deepspeed_zero3_offload(launched, local_run):
    _, lock = launched("deepspeed_z3_offload")
    _same_artifacts_as_local(lock, local_run)


def test_ray_train_workers_same_weights_as_torchrun(tmp_path, run_cli, quick, dist_cache, lock_of, ddp_run):
    """launch=ray: 2 Ray Train workers (gloo) run the torchrun ranks' code and train the very same adapter as the
    2-rank DDP run; the Ray run lands under its name and storage, and the local Ray is gone afterwards."""
    pytest.importorskip("ray", reason="Ray Train is an optional extra: pip install 'llmpipe[ray]'")
    import shutil
    import tempfile

    ray_tmp = Path(tempfile.mkdtemp(prefix="lr", dir="/tmp"))   # Ray's socket paths must stay short
    bad = run_cli(tmp_path, *quick, "launch=ray", "launch.ray_run_name=a/b", cache=dist_cache, check=False)
    assert bad.returncode == 2 and "launch.ray_run_name" in bad.stdout + bad.stderr
    proc = run_cli(tmp_path, *quick, "launch=ray", "launch.ray_run_name=llmpipe-ray-test",
                   f"launch.ray_storage_path={ray_tmp}/runs", f"++launch.ray_init_kwargs={{_temp_dir: {ray_tmp}/ray}}",
                   cache=dist_cache)
    lock = lock_of(tmp_path / "outputs")
    assert lock["status"] == "complete" and lock["stages"]["train"]["status"] == "ran"
    assert "launching 2 ranks (ray, Ray Train DDP, PACK)" in proc.stdout, proc.stdout[-3000:]
    assert (ray_tmp / "runs" / "llmpipe-ray-test").is_dir()
    # ray.shutdown() ended the local cluster: no process still runs from its temporary folder
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).count(str(ray_tmp))]
    assert left == [], [_cmdline(p)[:200] for p in left]
    _, ddp_lock = ddp_run   # the DDP test's run
    mine, ref = _adapter_tensors(_train_output(lock)), _adapter_tensors(_train_output(ddp_lock))
    assert mine.keys() == ref.keys() and all(float((mine[k] - ref[k]).abs().max()) <= 1e-6 for k in mine)
    assert any(float(v.abs().max()) > 0 for k, v in mine.items() if "lora_B" in k)
    ours, theirs = (json.loads((_train_output(x) / "metrics.json").read_text()) for x in (lock, ddp_lock))
    assert ours["global_step"] == theirs["global_step"] == 3
    assert abs(ours["eval_loss"] - theirs["eval_loss"]) <= 1e-6 and ours["eval_loss"] < ours["eval_loss_initial"]
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
