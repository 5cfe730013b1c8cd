"""LLaMA-Factory's venv for the multimodal benchmark (``bench/.lfvlmvenv``, git-ignored).

LLaMA-Factory's Qwen2-VL plugin goes through the composite processor (``Qwen2VLProcessor``), whose image and
video processors import torchvision. PyPI's torchvision does not load beside the CPU torch 2.13.0 that
``bench/.lfvenv`` uses (``operator torchvision::nms does not exist``), so the VLM measure has its own venv:
torch 2.14.1 + torchvision 0.29.1 (a CUDA build that pip on Python 3.11 takes from this machine's disk; it
runs on the CPU), then llamafactory==0.9.5 with both held by a constraint file. LF 0.9.5 pins transformers
<= 5.6, trl <= 0.24, peft <= 0.18.1, datasets <= 4.0, accelerate <= 1.11, so pip takes those maxima (the
same versions as ``bench/.lfvenv``). If torchaudio's extension libraries fail to load beside this torch, they
are moved aside as in ``bench.lfenv`` (LF imports torchaudio only for audio); torchvision must import.
"""
from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

from bench.lfenv import LF_VERSION, STAMP, _check, _imports_ok, _run, python

TORCH_VERSION = "2.14.1"
TORCHVISION_VERSION = "0.29.1"
DEFAULT_DIR = Path(__file__).resolve().parent / ".lfvlmvenv"
PACKAGES = ("llamafactory", "torch", "torchvision", "transformers", "trl", "peft", "datasets", "accelerate",
            "tokenizers", "pillow")


def _fix_torchaudio(venv_dir: Path, log) -> list[str]:
    py = python(venv_dir)
    if _imports_ok(py, "torchaudio"):
        return []
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=False, capture_output=True, text=True).stdout.strip()
    libs = sorted((Path(site) / "torchaudio" / "lib").glob("*.so"))
    aside = Path(venv_dir) / "disabled-torchaudio-libs"
    aside.mkdir(exist_ok=True)
    for so in libs:
        so.rename(aside / so.name)
    return [(f"moved {len(libs)} torchaudio extension libraries to {aside.name}/ (they do not load beside "
            f"torch {TORCH_VERSION})")]


def ensure(venv_dir: Path = DEFAULT_DIR, log=print) -> dict:
    """Create (once) and return facts about the VLM venv: versions, the torch build, the workaround applied."""
    venv_dir = Path(venv_dir)
    py = python(venv_dir)
    if not (venv_dir / STAMP).is_file():
        log(f"installing LLaMA-Factory {LF_VERSION} with torch {TORCH_VERSION} + torchvision {TORCHVISION_VERSION} "
            f"into {venv_dir} (several minutes, ~8 GB)")
        if not py.is_file():
            venv.EnvBuilder(with_pip=True).create(venv_dir)
        quiet = {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        _check(_run([py, "-m", "pip", "install", "-q", f"torch=={TORCH_VERSION}",
                     f"torchvision=={TORCHVISION_VERSION}"], log, quiet), "pip install torch torchvision")
        cons = venv_dir / "lf-constraints.txt"
        cons.write_text(f"torch=={TORCH_VERSION}\ntorchvision=={TORCHVISION_VERSION}\n")
        _check(_run([py, "-m", "pip", "install", "-q", f"llamafactory=={LF_VERSION}"], log,
                    {**quiet, "PIP_CONSTRAINT": str(cons)}), "pip install llamafactory")
        if not _imports_ok(py, "torchvision"):
            raise RuntimeError(f"torchvision does not import in {venv_dir}; the VLM measure needs it")
        done = _fix_torchaudio(venv_dir, log)
        for d in done:
            log(f"  workaround: {d}")
        (venv_dir / "workaround.txt").write_text("\n".join(done) + "\n")
        _check(_run([venv_dir / "bin" / "llamafactory-cli", "version"], log), "llamafactory-cli version")
        (venv_dir / STAMP).write_text(LF_VERSION + "\n")
    code = ("import importlib.metadata as m, json, torch; print(json.dumps({'versions': {p: m.version(p) for p in "
            f"{PACKAGES!r}}}, 'torch_cuda_build': torch.version.cuda, 'cuda_available': torch.cuda.is_available()}}))")
    facts = subprocess.run([str(py), "-c", code], check=False, capture_output=True, text=True)
    _check(facts, "reading the VLM venv's versions")
    work = venv_dir / "workaround.txt"
    return {"venv": str(venv_dir), **json.loads(facts.stdout),
            "workaround": [w for w in work.read_text().splitlines() if w] if work.is_file() else []}


if __name__ == "__main__":
    print(ensure(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR))
