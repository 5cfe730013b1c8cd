"""bench/gpu_check.py, the one script the GPU machine runs (`make gpu-check`), checked without a GPU: every llmpipe
command it will run composes and passes pre-flight on a simulated one-GPU machine with Liger and DeepSpeed; the
runner enforces each step's timeout and the overall budget (killing a hung step's whole process group) and
writes the JSON/Markdown report named after the GPU; the CLI's --dry-run --cpu writes the plan. The wheelhouse
plan (bench/gpu_wheels.py) carries what the machine lacks or has at a wrong version, and nothing it has right."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench import gpu_check, gpu_wheels

ROOT = Path(__file__).resolve().parents[3]


def llmpipe_overrides(step) -> list[str]:
    argv = step.argv[step.argv.index("llmpipe") + 1:]
    return [o for o in argv if not o.startswith(("hydra.", "run.cache_root="))]


def test_every_llmpipe_step_passes_preflight_on_one_gpu(tmp_path, hydra_compose):
    from llmpipe.config.environment import Environment
    from llmpipe.pipeline.preflight import validate

    steps = gpu_check.plan(tmp_path, model="builtin:tiny", has=lambda m: True)
    names = [s.name for s in steps]
    assert names == ["env", "assets", "sft", "sft_liger", "bench", "pytest", "dpo", "kto", "rm_ppo", "fsdp",
                     "deepspeed", "vlm", "dpo_liger", "kto_liger", "rm_ppo_liger", "profile"]
    assert not any(s.skip for s in steps)   # on a GPU with the carried wheels nothing is skipped
    gpu = Environment(gpu_count=1, available_packages=frozenset({"liger_kernel", "deepspeed"}))
    checked = 0
    for step in steps:
        if "llmpipe" not in step.argv:
            continue
        over = llmpipe_overrides(step)
        assert "train.bf16=true" in over, step.name
        assert ("model.enable_liger_kernel=true" in over) == step.name.endswith("_liger")
        cfg = hydra_compose(*over, model="tiny_vl" if step.name == "vlm" else "tiny")
        validated, problems = validate(cfg, env=gpu)
        assert not problems, (step.name, [p.render() for p in problems])
        obj = validated.obj
        assert obj.train.bf16 and obj.train.max_steps == (20 if step.name == "vlm" else 10)
        assert obj.train.padding_free is not False   # padding-free unless the model forbids it
        if step.name in ("fsdp", "deepspeed"):
            assert obj.launch.kind == step.name and obj.launch.nproc_per_node == 1
        checked += 1
    assert checked == 12
    pytest_step = steps[names.index("pytest")]
    assert "tests/integration/test_methods_gpu.py" in pytest_step.argv and "-m" in pytest_step.argv
    from bench.__main__ import parse

    bench = steps[names.index("bench")].argv
    bench_args = parse(bench[bench.index("bench") + 1:])
    assert bench_args.no_lf and bench_args.device == "cuda" and set(bench_args.only) == {"sft", "dpo"}


def test_steps_are_time_boxed_and_the_report_names_the_gpu(tmp_path):
    py = sys.executable
    env_json = tmp_path / "work" / "env.json"
    steps = [
        gpu_check.Step("env", [py, "-c", (f"import json; open({str(env_json)!r}, 'w').write(json.dumps("
                                          "{'gpu': 'NVIDIA H100 80GB HBM3'}))")], 10, "probe"),
        gpu_check.Step("ok", [py, "-c", "print('fine')"], 10, "works"),
        gpu_check.Step("fails", [py, "-c", "import sys; print('boom'); sys.exit(3)"], 10, "fails"),
        # the child of a hung step (a torchrun rank) is killed with it: the pipe closes, communicate() returns
        gpu_check.Step("hangs", [py, "-c", ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                                            "'import time; time.sleep(60)']); time.sleep(60)")], 1, "hangs"),
        gpu_check.Step("cpu_only", [py, "-c", "pass"], 10, "skipped", skip="needs CUDA"),
    ]
    out = tmp_path / "out"
    report = gpu_check.execute(steps, out, tmp_path / "work", budget_s=gpu_check.MIN_STEP_S + 8, meta={})
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert status == {"env": "ok", "ok": "ok", "fails": "failed", "hangs": "timeout", "cpu_only": "skipped"}
    rows = {s["name"]: s for s in report["steps"]}
    assert rows["fails"]["rc"] == 3 and "boom" in rows["fails"]["tail"]
    assert rows["hangs"]["seconds"] < 30 and rows["cpu_only"]["reason"] == "needs CUDA"
    saved = json.loads((out / "gpu_check.json").read_text())
    assert saved["gpu"] == "NVIDIA H100 80GB HBM3" and saved["steps"] == report["steps"]
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("# GPU check: NVIDIA H100 80GB HBM3") and "| fails |" in md and "boom" in md
    assert "fine" in (out / "gpu_check.log").read_text()
    # a budget that is spent skips the remaining steps instead of starting them
    late = gpu_check.execute([steps[1]], tmp_path / "out2", tmp_path / "work", budget_s=1, meta={})
    assert late["steps"][0]["status"] == "skipped" and "budget" in late["steps"][0]["reason"]


def test_dry_run_cpu_writes_the_plan(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--cpu", "--dry-run", "--out", str(out),
                           "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    assert {s["status"] for s in steps.values()} == {"planned"} and report["mode"] == "cpu"
    assert "model.name_or_path=builtin:tiny" in steps["sft"]["command"]
    assert "train.bf16" not in steps["sft"]["command"]
    assert steps["sft_liger"]["skip"] and steps["fsdp"]["skip"] and steps["sft"]["skip"] is None
    bad = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--only", "nope", "--dry-run", "--out",
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "unknown nope" in bad.stderr


def test_wheel_plan_carries_what_the_machine_lacks_or_has_wrong():
    def req(*r):
        return {"version": "1", "requires": list(r), "pure": True}

    meta = {"llmpipe": req("transformers>=5.23", "peft<0.22,>=0.21", "torch==2.13.0"),
            "transformers": {**req("huggingface-hub>=2.4", "tokenizers>=0.23.1", "numpy>=1.17"), "version": "5.25.0"},
            "huggingface-hub": {**req("httpx2>=2"), "version": "2.4.0"}, "httpx2": req(),
            "peft": {**req("rich>=13"), "version": "0.21.2"}, "tokenizers": {**req(), "pure": False},
            "numpy": {**req(), "pure": False}, "rich": req(), "typer": req("rich>=13.8"),
            "accelerate": {**req(), "version": "1.16.0"}}
    machine = {"transformers": "5.17.0", "huggingface-hub": "1.33.0", "tokenizers": "0.23.2", "numpy": None,
               "peft": None, "torch": "2.11.0", "rich": None, "typer": None, "accelerate": "1.15.0"}
    plan = gpu_wheels.closure(meta, machine, roots=("transformers", "peft", "torch", "typer", "accelerate"), force=("peft",),
                              extra_pins={}, extra_requires={})
    carry = plan["carry"]
    assert set(carry) == {"transformers", "huggingface-hub", "httpx2", "peft", "rich", "accelerate"}
    assert carry["accelerate"]["why"] == "machine has 1.15.0, .venv's tested 1.16.0 (pure Python, small)"
    assert "machine has 5.17.0" in carry["transformers"]["why"] and carry["transformers"]["version"] == "5.25.0"
    assert carry["httpx2"]["why"] == "not on the machine"
    # compiled with an unknown version: assumed (checked on the machine); typer stays the machine's, and so do the
    # requirements of what stays; torch is never carried
    assert plan["assumed"] == {"numpy": ">=1.17"} and "torch" in plan["skipped"]


def test_profile_summary_ranks_kernels_by_self_time(tmp_path):
    events = [{"cat": "kernel", "name": "sm90_gemm", "dur": 3000}, {"cat": "kernel", "name": "flash_fwd", "dur": 500},
              {"cat": "kernel", "name": "sm90_gemm", "dur": 1000}, {"cat": "cpu_op", "name": "aten::mm", "dur": 9000}]
    (tmp_path / "host.1.pt.trace.json").write_text(json.dumps({"traceEvents": events}))
    (tmp_path / "module_times.json").write_text(json.dumps({"model.layers.0.mlp": 1.5}))
    prof = gpu_check.profile_summary(tmp_path)
    assert prof["traces"] == 1 and prof["modules"] == {"model.layers.0.mlp": 1.5}
    assert prof["top"] == [{"name": "sm90_gemm", "ms": 4.0, "share": 0.889}, {"name": "flash_fwd", "ms": 0.5,
                                                                                "share": 0.111}]
    md = gpu_check.markdown({"budget_s": 1, "steps": [{"name": "profile", "what": "", "status": "ok",
                                                       "profile": prof}]})
    assert "| `sm90_gemm` | 4.0 | 88.9% |" in md
