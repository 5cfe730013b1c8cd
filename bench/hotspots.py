"""Where llmpipe's time goes: a py-spy profile of one training run grouped into phases, and Python's
``-X importtime`` of start-up. Falls back to cProfile when py-spy is missing or may not trace.

    python -m bench.hotspots OUT_DIR -- <command...>
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# phase -> patterns on a frame "function (file:line)"; the first phase whose pattern is in a stack wins
PHASES = (
    ("imports", ("_find_and_load",)),
    ("saving outputs", ("save_outputs", "save_pretrained")),
    ("optimizer step", ("Optimizer.step", "_fused_adam", "adamw.py", "adam.py", "clip_grad_norm")),
    ("backward: recompute of checkpointed layers", ("CheckpointFunction.backward",)),
    ("backward", ("Tensor.backward", "_engine_run_backward")),
    ("forward (loss)", ("compute_loss", "training_step")),
    ("data: read + tokenize", ("build_datasets", "stages/load.py", "load_tokenizer")),
    ("model: load + LoRA", ("prepare_model", "from_pretrained", "adapt.py", "get_peft_model")),
    ("trainer setup", ("Trainer.__init__", "DPOTrainer.__init__", "training_arguments")),
    ("config: compose + validate + plan", ("compose_config", "preflight", "config/validate.py", "build_plan",
                                           "compute_fingerprints")),
)


def phase_of(stack: list[str]) -> str:
    joined = ";".join(stack)
    for name, pats in PHASES:
        if any(p in joined for p in pats):
            return name
    return "other"


def summarize_raw(text: str) -> dict[str, float]:
    """py-spy ``--format raw`` (collapsed stacks with counts) -> share of samples per phase."""
    c, total = Counter(), 0
    for line in text.splitlines():
        m = re.match(r"^(.*) (\d+)$", line)
        if not m:
            continue
        n = int(m.group(2))
        total += n
        c[phase_of(m.group(1).split(";"))] += n
    return {k: v / total for k, v in c.most_common()} if total else {}


def pyspy(out_dir: Path, cmd: list[str], rate: int = 50) -> dict | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).is_file():
        return None
    raw = out_dir / "pyspy.txt"
    p = subprocess.run([exe, "record", "-r", str(rate), "-s", "-f", "raw", "-o", str(raw), "--", *cmd],
                       capture_output=True, text=True)
    if not raw.is_file():
        return {"error": (p.stderr or p.stdout).strip()[-300:]}
    return {"tool": "py-spy", "phases": summarize_raw(raw.read_text()), "raw": str(raw), "rc": p.returncode}


def cprofile(out_dir: Path, cmd: list[str]) -> dict:
    """Fallback: cProfile of ``python -m ...`` (cmd[0] is the interpreter); top cumulative entries."""
    prof = out_dir / "cprofile.out"
    subprocess.run([cmd[0], "-m", "cProfile", "-o", str(prof), *cmd[1:]], capture_output=True)
    import pstats

    st = pstats.Stats(str(prof))
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][3])[:25]
    return {"tool": "cProfile", "top": [(f"{k[2]} ({Path(k[0]).name}:{k[1]})", round(v[3], 2)) for k, v in rows]}


def importtime(python: str, args: list[str], top: int = 12) -> dict:
    """``python -X importtime <args>``: total import seconds and the slowest top-level packages."""
    p = subprocess.run([python, "-X", "importtime", *args], capture_output=True, text=True)
    per_pkg, total = Counter(), 0
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not m:
            continue
        cumulative, depth, name = int(m.group(2)), len(m.group(3)), m.group(4)
        if depth <= 1:   # top-level imports only: their cumulative time covers what they pull in
            per_pkg[name.split(".")[0]] += cumulative
            total += cumulative
    return {"import_s": total / 1e6, "slowest": [(k, round(v / 1e6, 3)) for k, v in per_pkg.most_common(top)]}


def profile(out_dir: Path, cmd: list[str]) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    res = pyspy(out_dir, cmd)
    if res is None or "error" in res:
        fallback = cprofile(out_dir, cmd)
        fallback["pyspy_error"] = (res or {}).get("error", "py-spy not installed")
        return fallback
    return res


def render(train: dict | None, startup: dict | None) -> str:
    lines = []
    if train:
        if "phases" in train:
            lines.append("Wall-clock samples of one llmpipe SFT run (matched settings) by phase (py-spy, 50 Hz):")
            lines.append("")
            lines += [f"- {k}: {100 * v:.1f} %" for k, v in train["phases"].items()]
        elif "top" in train:
            lines.append(f"cProfile of one llmpipe SFT run (py-spy unavailable: {train.get('pyspy_error')}):")
            lines += [f"- {k}: {v} s cumulative" for k, v in train["top"][:15]]
        lines.append("")
    if startup:
        lines.append(f"`python -X importtime -m llmpipe --help`: {startup['import_s']:.2f} s of imports; slowest "
                     "top-level packages (cumulative s): " + ", ".join(f"{k} {v}" for k, v in startup["slowest"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sep = sys.argv.index("--")
    print(profile(Path(sys.argv[1]), sys.argv[sep + 1:]))
