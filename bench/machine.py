"""The machine a benchmark ran on, and its measured matmul peak (FLOP/s), taken in a subprocess of
llmpipe's venv so that torch's thread settings are the ones training gets.

    python -m bench.machine [--device cuda]     # prints the JSON
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

# Square matmuls large enough to reach the peak, and the shapes a bench SFT step actually multiplies
# (batch 4 x ~118 tokens against the 256 -> 688 MLP and 256 -> 4096 lm_head), for the profile's finding.
PEAK_SIZES = {"cpu": (1024, 2048), "cuda": (4096, 8192)}
MODEL_SHAPES = {"mlp_up": (472, 256, 688), "mlp_down": (472, 688, 256), "lm_head": (472, 256, 4096),
                "attn_q": (472, 256, 256)}


def describe() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": mem, "python": platform.python_version(),
            "platform": platform.platform(), "load_avg": [round(x, 2) for x in os.getloadavg()]}


def matmul_peak(device: str = "cpu", reps: int = 10) -> dict:
    """Best-of-``reps`` FLOP/s of square fp32 (cpu) or bf16 (cuda) matmuls, plus the model's own shapes."""
    import time

    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def best(m, k, n):
        a = torch.randn(m, k, dtype=dtype, device=device)
        b = torch.randn(k, n, dtype=dtype, device=device)
        a @ b
        sync()
        top = 0.0
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            sync()
            top = max(top, 2 * m * k * n / (time.perf_counter() - t0))
        return top

    square = {str(s): best(s, s, s) for s in PEAK_SIZES[device]}
    out = {"device": device, "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
           "interop_threads": torch.get_num_interop_threads(), "torch": torch.__version__,
           "peak_flops": max(square.values()), "square": square}
    if device == "cpu":
        out["model_shapes"] = {k: best(*v) for k, v in MODEL_SHAPES.items()}
    else:
        out["gpu"] = torch.cuda.get_device_name(0)
    from bench.stats import best_peak

    out["peak_flops"] = best_peak(out)
    return out


def measure(python: Path, device: str = "cpu") -> dict:
    """``matmul_peak`` in a fresh process of ``python`` (llmpipe's venv)."""
    code = f"import json; from bench.machine import matmul_peak; print(json.dumps(matmul_peak({device!r})))"
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=str(root))
    if p.returncode != 0:
        raise RuntimeError(f"matmul peak measurement failed: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    dev = "cuda" if "--device" in sys.argv and sys.argv[-1] == "cuda" else "cpu"
    print(json.dumps({"machine": describe(), "peak": matmul_peak(dev)}, indent=1))
