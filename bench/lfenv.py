"""LLaMA-Factory's own virtual environment for the benchmark (``bench/.lfvenv``, git-ignored).

LLaMA-Factory 0.9.5 pins transformers <= 5.6, trl <= 0.24, peft <= 0.18.1, datasets <= 4.0, so it cannot
share llmpipe's venv. The recipe: torch==2.13.0 first, then llamafactory==0.9.5 with torch held by a
constraint file. On a CPU-only torch the CUDA-only torchvision/torchaudio wheels that LF drags in break its
imports (``operator torchvision::nms does not exist``, ``libc10_cuda.so`` missing); the workaround is to
uninstall torchvision (LF never imports it) and move torchaudio's extension libraries aside (torchaudio then
imports as a build without extensions). It is applied only when those imports actually fail.
"""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

LF_VERSION = "0.9.5"
TORCH_VERSION = "2.13.0"
DEFAULT_DIR = Path(__file__).resolve().parent / ".lfvenv"
STAMP = ".bench-installed"


def python(venv_dir: Path) -> Path:
    return Path(venv_dir) / "bin" / "python"


def _run(cmd: list[str], log, env: dict | None = None) -> subprocess.CompletedProcess:
    log("  $ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], env={**os.environ, **(env or {})}, text=True,
                          capture_output=True)


def _check(p: subprocess.CompletedProcess, what: str) -> None:
    if p.returncode != 0:
        tail = (p.stdout + p.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"{what} failed (exit {p.returncode}):\n" + "\n".join(tail))


def _imports_ok(py: Path, module: str) -> bool:
    return subprocess.run([str(py), "-c", f"import {module}"], capture_output=True).returncode == 0


def apply_workaround(venv_dir: Path, log=print) -> list[str]:
    """Remove the CUDA-only torchvision and disable torchaudio's CUDA extension libraries when they
    break imports (CPU torch). Returns what was done."""
    py, done = python(venv_dir), []
    if not _imports_ok(py, "torchvision"):
        pip = _run([py, "-m", "pip", "uninstall", "-y", "torchvision"], log)
        _check(pip, "pip uninstall torchvision")
        done.append("uninstalled torchvision (CUDA-only build; LLaMA-Factory never imports it)")
    if not _imports_ok(py, "torchaudio"):
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True).stdout.strip()
        libs = sorted((Path(site) / "torchaudio" / "lib").glob("*.so"))
        aside = Path(venv_dir) / "disabled-torchaudio-cuda-libs"
        aside.mkdir(exist_ok=True)
        for so in libs:
            so.rename(aside / so.name)
        done.append(f"moved {len(libs)} torchaudio extension libraries to {aside.name}/ (they need libc10_cuda.so)")
    return done


def ensure(venv_dir: Path = DEFAULT_DIR, log=print) -> dict:
    """Create (once) and return facts about LLaMA-Factory's venv: versions and the workaround applied."""
    venv_dir = Path(venv_dir)
    py = python(venv_dir)
    stamp = venv_dir / STAMP
    if not stamp.is_file():
        log(f"installing LLaMA-Factory {LF_VERSION} into {venv_dir} (a few minutes, ~2 GB)")
        if not py.is_file():
            venv.EnvBuilder(with_pip=True).create(venv_dir)
        quiet = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CONSTRAINT": ""}
        _check(_run([py, "-m", "pip", "install", "-q", f"torch=={TORCH_VERSION}"], log, quiet), "pip install torch")
        local = subprocess.run([str(py), "-c", "import torch; print(torch.__version__)"], capture_output=True,
                               text=True).stdout.strip()
        cons = venv_dir / "lf-constraints.txt"
        cons.write_text(f"torch=={local}\n")   # e.g. 2.13.0+cpu: nothing may replace it
        _check(_run([py, "-m", "pip", "install", "-q", f"llamafactory=={LF_VERSION}"], log,
                    {**quiet, "PIP_CONSTRAINT": str(cons)}), "pip install llamafactory")
        done = apply_workaround(venv_dir, log)
        for d in done:
            log(f"  workaround: {d}")
        (venv_dir / "workaround.txt").write_text("\n".join(done) + "\n")
        cli = venv_dir / "bin" / "llamafactory-cli"
        _check(_run([cli, "version"], log), "llamafactory-cli version (after the install)")
        stamp.write_text(LF_VERSION + "\n")
    versions = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
         "('llamafactory','torch','transformers','trl','peft','datasets','accelerate','tokenizers')}))"],
        capture_output=True, text=True)
    _check(versions, "reading LLaMA-Factory venv versions")
    import json

    work = venv_dir / "workaround.txt"
    return {"venv": str(venv_dir), "versions": json.loads(versions.stdout),
            "workaround": [w for w in work.read_text().splitlines() if w] if work.is_file() else []}


if __name__ == "__main__":
    print(ensure(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR))
