"""The GPU check (`make gpu-check`, docs/gpu.md): llmpipe's GPU paths in one time-boxed run on one CUDA GPU.

    python -m bench.gpu_check --out DIR [--work DIR] [--budget-s 450] [--only a,b] [--cpu] [--dry-run]

Run it through bench/gpu_check.sh on the GPU machine: that script installs the carried wheels (.whl/, made by
`make gpu-wheels`) into /tmp/site without touching torch and puts them on PYTHONPATH. The steps, in order, each
under its own timeout and all under one budget (a hung step cannot eat the run; a step with less than
MIN_STEP_S left is skipped and says so; ORDER runs the most telling steps first):

* ``env``: the GPU's name, torch/CUDA versions, the carried and assumed packages checked against what llmpipe
  needs (.whl/wheels.json), and the bf16 matmul peak (bench.machine.matmul_peak) that MFU is measured against;
* ``pytest``: the tests marked ``gpu`` (every test file that carries the mark): the tests ARE the check;
* ``assets``: a random model shaped like Qwen2.5-0.5B (bench.assets.build_gpu_model: 24 layers, hidden 896,
  vocabulary 151,936, tied embeddings) in bf16, built offline;
* LoRA ``sft``, ``dpo``, ``kto`` and ``rm_ppo`` (a reward model, then PPO against it), each with Liger's kernels
  off and on (``*_liger``), on that model in bf16 with padding-free batches (llmpipe's varlen SDPA on CUDA);
* ``fsdp``: full fine-tuning under FSDP on one GPU (torchrun, one rank); ``deepspeed``: ZeRO-2 on NCCL;
* ``vlm``: the tiny vision-language recipe (+recipe=vlm_demo, shortened);
* ``profile`` (after ``bench``): the SFT run again with the torch profiler (3 active steps) and per-module forward times: the top
  kernels by self time go into the report (where the time goes when the MFU goal is missed);
* ``bench``: `python -m bench --device cuda --no-lf --quick` (tokens/s and MFU of SFT and DPO against the peak
  measured in that run; LLaMA-Factory's wheels do not fit, see bench/gpu_wheels.py TOO_BIG).

Results: ``gpu_check.json`` and ``gpu_check.md`` (one row per step: status, seconds, loss, tokens/s, peak CUDA
memory, the reason of a skip or the tail of a failure's log), ``gpu_check.log`` (every step's output) and the
benchmark's ``bench_results.json`` / ``bench_RESULTS.md``, all directly in --out, named after the GPU inside.

``--cpu`` runs the same steps on the CPU with the built-in tiny model and 1-2 steps (CUDA-only steps are skipped
with the reason); ``--dry-run`` writes the plan and the report without running any step (tests/unit/bench/
test_gpu_check.py uses both, so the script cannot rot without a GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIN_STEP_S = 20          # a step with less time left than this is skipped, not started
DEFAULT_BUDGET_S = 450   # of the 8 minutes: the wheels' install and the machine's start come on top
CPU_SLOWER = 8           # --cpu: each step's timeout is this many times the GPU's
TAIL = 3000              # characters of a failed step's output kept in the JSON


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: int
    what: str
    skip: str | None = None                  # why this step does not run (CPU mode, a missing package)
    job_dir: str | None = None               # llmpipe's job folder (its lock file holds the metrics)
    env: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- the plan
def gpu_test_files(root: Path = ROOT) -> list[str]:
    """Every test file that marks tests ``gpu`` (relative to ``root``)."""
    return sorted(str(p.relative_to(root)) for p in (root / "tests").rglob("test_*.py")
                  if "pytest.mark.gpu" in p.read_text(encoding="utf-8", errors="replace"))


def llmpipe_overrides(name: str, model: str, *, cpu: bool) -> list[str]:
    """The llmpipe overrides of training step ``name`` (without the store/job folders)."""
    steps = 2 if cpu else 10
    common = [f"model.name_or_path={model}", "data.template=chatml", f"train.max_steps={steps}",
              "train.logging_steps=1", "train.save_strategy=no", "data.cutoff_len=256", "run.sample=false",
              "train.per_device_train_batch_size=" + ("2" if cpu else "8")]
    common += [] if cpu else ["train.bf16=true"]
    base, liger = name.removesuffix("_liger"), name.endswith("_liger")
    kernels = ["model.enable_liger_kernel=true"] if liger else []
    lora = ["train.do_train=true", "train.finetuning_type=lora", "lora.rank=16", "lora.target=all"]
    table = {
        "sft": ["train.stage=sft", "data.dataset=demo_sft", *lora],
        "dpo": ["train.stage=dpo", "data.dataset=demo_pref", "pref.beta=0.1", *lora],
        "kto": ["+recipe=kto_qwen", "train.eval_strategy=no", "data.eval_dataset=null", *lora],
        "rm_ppo": ["+recipe=ppo_qwen", "generate.max_new_tokens=" + ("4" if cpu else "16"), "data.eval_dataset=null",
                   "train.per_device_eval_batch_size=" + ("2" if cpu else "8"), *lora],
        "fsdp": ["train.stage=sft", "data.dataset=demo_sft", "train.do_train=true", "train.finetuning_type=full",
                 "launch=fsdp", "launch.nproc_per_node=1"],
        "deepspeed": ["train.stage=sft", "data.dataset=demo_sft", *lora, "launch=deepspeed_z2",
                      "launch.nproc_per_node=1"],
    }
    return table[base] + common + kernels


def plan(work: Path, *, cpu: bool = False, model: str | None = None, python: str = sys.executable,
         has=None) -> list[Step]:
    """The steps of the check, in order. ``has(module)`` says whether a package is importable (default: find_spec)."""
    import importlib.util

    has = has or (lambda m: importlib.util.find_spec(m) is not None)
    assets = work / "assets"
    model = model or ("builtin:tiny" if cpu else str(assets / "model_gpu"))
    steps = [Step("env", [python, "-m", "bench.gpu_check", "--probe", "--out", str(work / "env.json")] +
                  (["--cpu"] if cpu else []), 120, "GPU, versions, carried packages, bf16 matmul peak")]
    tests = gpu_test_files()
    steps.append(Step("pytest", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-o",
                                 "addopts=", "--timeout=150", f"--junitxml={work / 'pytest.xml'}", *tests], 240,
                      f"the {len(tests)} test files with gpu-marked tests",
                      skip="the gpu tests skip without CUDA (run by `make test`)" if cpu else None))
    steps.append(Step("assets", [python, "-m", "bench.assets", str(assets), "--device", "cuda"], 120,
                      "the Qwen2.5-0.5B-shaped random model (bf16) and the bench data",
                      skip="the CPU check uses builtin:tiny" if cpu else None))
    store = work / "store"
    for name in ("sft", "sft_liger", "dpo", "dpo_liger", "kto", "kto_liger", "rm_ppo", "rm_ppo_liger", "fsdp",
                 "deepspeed"):
        job = work / "jobs" / name
        argv = [python, "-m", "llmpipe", *llmpipe_overrides(name, model, cpu=cpu), f"run.cache_root={store}",
                f"hydra.run.dir={job}"]
        skip = None
        if name.endswith("_liger") and (cpu or not has("liger_kernel")):
            skip = "Liger's kernels are Triton GPU kernels" if cpu else "liger-kernel is not installed"
        elif name in ("fsdp", "deepspeed") and cpu:
            skip = "FSDP/DeepSpeed on NCCL need a GPU"
        elif name == "deepspeed" and not has("deepspeed"):
            skip = "deepspeed is not installed (bench/gpu_wheels.py carries it)"
        timeout = {"rm_ppo": 180, "rm_ppo_liger": 180, "fsdp": 120, "deepspeed": 150}.get(name, 75)
        steps.append(Step(name, argv, timeout, _WHAT[name.removesuffix("_liger")] +
                          (", Liger on" if name.endswith("_liger") else ""), skip=skip, job_dir=str(job)))
    vlm = ["+recipe=vlm_demo", "train.max_steps=" + ("2" if cpu else "20"), "train.eval_strategy=no",
           "data.eval_dataset=null", f"export.dir={work / 'vlm_export'}", "run.sample=false"]
    steps.append(Step("vlm", [python, "-m", "llmpipe", *vlm, *([] if cpu else ["train.bf16=true"]),
                              f"run.cache_root={store}", f"hydra.run.dir={work / 'jobs' / 'vlm'}"], 120,
                      "the tiny VLM recipe (LoRA, export)", job_dir=str(work / "jobs" / "vlm")))
    steps.append(Step("bench", [python, "-m", "bench", "--device", "cuda", "--no-lf", "--quick", "--only", "sft,dpo",
                                "--work", str(work), "--out", str(work / "bench_out")], 240,   # reuses assets/
                      "tokens/s and MFU of SFT and DPO (llmpipe alone)",
                      skip="`python -m bench` measures the CPU itself" if cpu else None))
    prof = work / "torch_profile"
    steps.append(Step("profile", [python, "-m", "llmpipe", *llmpipe_overrides("sft", model, cpu=cpu),
                                  "train.enable_torch_profiler=true", f"train.profiler_output_dir={prof}",
                                  "train.profiler_active_steps=3", "train.profiler_repeat=1",
                                  'train.profile_modules="*.self_attn,*.mlp,*lm_head"', "run.force=train",
                                  f"run.cache_root={store}", f"hydra.run.dir={work / 'jobs' / 'profile'}"], 120,
                      "where the time of a LoRA SFT step goes: torch profiler (top kernels), per-module forward times",
                      job_dir=str(work / "jobs" / "profile")))
    if cpu:   # a shared 2-core machine builds builtin:tiny and trains far slower than a GPU
        for st in steps:
            st.timeout_s *= CPU_SLOWER
    return sorted(steps, key=lambda st: ORDER.index(st.name))


# Most telling first: when the budget runs out, the tail is skipped (and says so), not the MFU measurement
ORDER = ("env", "assets", "sft", "sft_liger", "bench", "pytest", "dpo", "kto", "rm_ppo", "fsdp", "deepspeed", "vlm",
         "dpo_liger", "kto_liger", "rm_ppo_liger", "profile")


_WHAT = {"sft": "LoRA SFT, padding-free", "dpo": "LoRA DPO, padding-free", "kto": "LoRA KTO (+recipe=kto_qwen)",
         "rm_ppo": "reward model then LoRA PPO (+recipe=ppo_qwen)", "fsdp": "full fine-tuning, FSDP, 1 GPU",
         "deepspeed": "LoRA SFT, DeepSpeed ZeRO-2 on NCCL, 1 GPU"}


# --------------------------------------------------------------------------------------------------- running
def run_step(step: Step, timeout_s: float, log_file) -> dict:
    """Run one step under ``timeout_s``; its status, seconds and output tail. The output streams into
    ``log_file`` as it comes, so a check stopped from outside still leaves the running step's lines there."""
    log_file.write(f"\n===== {step.name}: {shlex.join(step.argv)}\n")
    log_file.flush()
    start = log_file.tell()
    t0 = time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **step.env}
    proc = subprocess.Popen(step.argv, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    _RUNNING[:] = [proc]
    try:
        proc.wait(timeout=timeout_s)
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        import signal

        os.killpg(proc.pid, signal.SIGKILL)   # the step and every process it started (torchrun ranks)
        proc.wait()
        status = "timeout"
    _RUNNING.clear()
    log_file.seek(0, os.SEEK_END)
    res = {"status": status, "rc": proc.returncode, "seconds": round(time.time() - t0, 1)}
    if status != "ok":
        with open(log_file.name, "rb") as f:
            f.seek(max(start, log_file.tell() - TAIL))
            res["tail"] = f.read().decode("utf-8", errors="replace")
    return res


_RUNNING: list = []   # the step in flight: a stopped check (SIGTERM, Ctrl-C) takes its process group down too


def _stop(signum, frame) -> None:
    import signal

    for proc in _RUNNING:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    raise SystemExit(128 + signum)


def lock_facts(job_dir: str | None) -> dict:
    """Loss, steps, runtime, tokens/s and peak CUDA memory of each stage from a job's lock file."""
    import yaml

    path = Path(job_dir or "") / "llmpipe.lock.yaml"
    if not job_dir or not path.is_file():
        return {}
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    out = {}
    for node, st in stages.items():
        m = st.get("metrics") or {}
        facts = {k: m[k] for k in ("train_loss", "global_step", "train_runtime", "train_tokens_per_second",
                                   "train_samples_per_second", "reward_mean", "eval_reward_accuracy") if k in m}
        if st.get("cuda_peak_gib") is not None:
            facts["cuda_peak_gib"] = st["cuda_peak_gib"]
        facts["status"], facts["seconds"] = st.get("status"), st.get("seconds")
        out[node] = facts
    return out


def pytest_summary(xml: Path) -> dict:
    """Counts and the names of failed tests from pytest's JUnit XML."""
    import xml.etree.ElementTree as ET

    if not xml.is_file():
        return {}
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s
              if c.find("failure") is not None or c.find("error") is not None]
    return {**counts, "failed": failed}


def execute(steps: list[Step], out: Path, work: Path, *, budget_s: float, meta: dict, dry_run: bool = False,
            runner=run_step) -> dict:
    """Run ``steps`` within ``budget_s``, writing the report after each one (a killed run leaves a partial report)."""
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    report = {**meta, "budget_s": budget_s, "steps": []}
    with open(out / "gpu_check.log", "a", encoding="utf-8") as log_file:   # text; the steps write bytes to it
        for step in steps:
            left = budget_s - (time.time() - t0)
            row = {"name": step.name, "what": step.what, "command": shlex.join(step.argv)}
            if dry_run:
                row.update(status="planned", skip=step.skip)
            elif step.skip:
                row.update(status="skipped", reason=step.skip)
            elif left < MIN_STEP_S:
                row.update(status="skipped", reason=f"budget: {left:.0f}s left of {budget_s:.0f}s")
            else:
                row.update(runner(step, min(step.timeout_s, left), log_file))
                row["timeout_s"] = round(min(step.timeout_s, left))
                row["stages"] = lock_facts(step.job_dir)
                _collect(step, row, work, out)
            report["steps"].append(row)
            report["seconds"] = round(time.time() - t0, 1)
            write_report(out, report)
    return report


def _collect(step: Step, row: dict, work: Path, out: Path) -> None:
    if step.name == "env" and (work / "env.json").is_file():
        row["env"] = json.loads((work / "env.json").read_text())
    elif step.name == "pytest":
        row["pytest"] = pytest_summary(work / "pytest.xml")
    elif step.name == "profile":
        row["profile"] = profile_summary(work / "torch_profile")
    elif step.name == "bench":
        res = work / "bench_out"
        for src, dst in (("results.json", "bench_results.json"), ("RESULTS.md", "bench_RESULTS.md")):
            if (res / src).is_file():
                shutil.copyfile(res / src, out / dst)
        if (res / "results.json").is_file():
            row["bench_rows"] = json.loads((res / "results.json").read_text()).get("rows")


def profile_summary(folder: Path, top: int = 12) -> dict:
    """The kernels (GPU) or operators (CPU) with the most self time in the profiler's traces, and the per-module
    forward times of train.profile_modules (module_times.json)."""
    totals: dict[str, float] = {}
    traces = sorted(folder.glob("*.pt.trace.json"))
    for trace in traces:
        events = json.loads(trace.read_text()).get("traceEvents", [])
        kernels = [e for e in events if e.get("cat") == "kernel"] or [e for e in events if e.get("cat") == "cpu_op"]
        for e in kernels:
            totals[e.get("name", "?")[:120]] = totals.get(e.get("name", "?")[:120], 0.0) + float(e.get("dur", 0))
    whole = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    out = {"traces": len(traces), "top": [{"name": n, "ms": round(us / 1000, 2), "share": round(us / whole, 3)}
                                          for n, us in ranked]}
    modules = folder / "module_times.json"
    if modules.is_file():
        out["modules"] = json.loads(modules.read_text())
    return out


# ---------------------------------------------------------------------------------------------------- report
def gpu_name(report: dict) -> str:
    for s in report["steps"]:
        if s["name"] == "env" and s.get("env"):
            return s["env"].get("gpu") or "no GPU"
    return report.get("gpu") or "unknown"


def _cell(row: dict) -> str:
    stages = row.get("stages") or {}
    train = next((v for k, v in stages.items() if k.startswith("train")), {})
    bits = []
    if "train_loss" in train:
        bits.append(f"loss {train['train_loss']:.3f}")
    if train.get("global_step") is not None and train.get("train_runtime") is not None:
        bits.append(f"{train['global_step']} steps in {train['train_runtime']:.1f} s")
    if "train_tokens_per_second" in train:
        bits.append(f"{train['train_tokens_per_second']:.0f} tok/s")
    peaks = [v["cuda_peak_gib"] for v in stages.values() if "cuda_peak_gib" in v]
    if peaks:
        bits.append(f"peak {max(peaks):.2f} GiB")
    env = row.get("env") or {}
    if env.get("peak"):
        bits.append(f"{env['peak']['dtype']} matmul peak {env['peak']['peak_flops'] / 1e12:.3g} TFLOP/s")
    if env.get("wrong_versions"):
        bits.append("WRONG VERSIONS: " + ", ".join(f"{k} {v}" for k, v in env["wrong_versions"].items()))
    if row.get("pytest"):
        p = row["pytest"]
        bits.append(f"{p['tests']} tests, {p['failures'] + p['errors']} failed, {p['skipped']} skipped")
    if row.get("reason") or row.get("skip"):
        bits.append(row.get("reason") or row.get("skip"))
    return "; ".join(bits)


def markdown(report: dict) -> str:
    head = (f"`{report.get('command', '')}` at {report.get('started', '')}, {report.get('mode', 'gpu')} mode, "
            f"{report.get('seconds', 0)} s of a {report['budget_s']:.0f} s budget.")
    lines = [f"# GPU check: {gpu_name(report)}", "", head, "",
             "| step | what | status | seconds | facts |", "|---|---|---|---|---|"]
    for r in report["steps"]:
        lines.append(f"| {r['name']} | {r['what']} | {r['status']} | {r.get('seconds', '')} | {_cell(r)} |")
    env = next((s.get("env") for s in report["steps"] if s["name"] == "env" and s.get("env")), None)
    if env:
        lines += ["", "## Machine", "", "```json", json.dumps(env, indent=1), "```"]
    prof = next((s.get("profile") for s in report["steps"] if s["name"] == "profile" and s.get("profile")), None)
    if prof and prof.get("top"):
        lines += ["", "## Where the time of a LoRA SFT step goes (torch profiler, self time)", "",
                  "| kernel / operator | ms | share |", "|---|---|---|"]
        lines += [f"| `{k['name']}` | {k['ms']} | {k['share']:.1%} |" for k in prof["top"]]
    failed = [r for r in report["steps"] if r["status"] in ("failed", "timeout")]
    for r in failed:
        lines += ["", f"## {r['name']}: {r['status']}", "", "```", r.get("tail", "")[-1500:], "```"]
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict) -> None:
    report["gpu"] = gpu_name(report)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))


# ----------------------------------------------------------------------------------------------------- probe
def probe(cpu: bool) -> dict:
    """The machine: GPU, torch/CUDA, carried and assumed packages against llmpipe's needs, the matmul peak."""
    import importlib.metadata as md

    import torch
    from packaging.specifiers import SpecifierSet

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "pythonpath": os.environ.get("PYTHONPATH", "")}
    wheels = ROOT / ".whl" / "wheels.json"
    need = {}
    if wheels.is_file():
        w = json.loads(wheels.read_text())
        need = {n: c["needed"] for n, c in w.get("carry", {}).items()} | w.get("assumed", {})
    versions, wrong = {}, {}
    for name, spec in sorted(need.items()):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            wrong[name] = f"missing (needed {spec or 'any'})"
            continue
        if spec and not SpecifierSet(spec).contains(versions[name], prereleases=True):
            wrong[name] = f"{versions[name]} (needed {spec})"
    info.update(packages=versions, wrong_versions=wrong)
    from bench.machine import matmul_peak

    device = "cpu" if cpu or not torch.cuda.is_available() else "cuda"
    peak = matmul_peak(device, reps=3 if device == "cpu" else 10)
    from bench.stats import best_peak

    info["peak"] = {**peak, "peak_flops": best_peak(peak)}
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "bench" / "results" / "gpu"))
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S)
    ap.add_argument("--only", default="", help="comma-separated step names (default: all)")
    ap.add_argument("--cpu", action="store_true", help="the same steps on the CPU, tiny model, CUDA-only ones skipped")
    ap.add_argument("--dry-run", action="store_true", help="write the plan and the report; run nothing")
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.probe:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(probe(a.cpu), indent=1) + "\n")
        return 0
    import tempfile

    work = a.work or Path(tempfile.mkdtemp(prefix="llmpipe-gpu-check-"))
    steps = plan(work, cpu=a.cpu)
    only = {s.strip() for s in a.only.split(",") if s.strip()}
    unknown = only - {s.name for s in steps}
    if unknown:
        ap.error(f"--only: unknown {', '.join(sorted(unknown))}; steps: {', '.join(s.name for s in steps)}")
    steps = [s for s in steps if not only or s.name in only]
    meta = {"command": "python -m bench.gpu_check " + " ".join(argv if argv is not None else sys.argv[1:]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "mode": "cpu" if a.cpu else "gpu", "work": str(work)}
    import signal

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    report = execute(steps, a.out, work, budget_s=a.budget_s, meta=meta, dry_run=a.dry_run)
    print((a.out / "gpu_check.md").read_text())
    bad = [s["name"] for s in report["steps"] if s["status"] in ("failed", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
