"""The wheelhouse for the GPU check (`make gpu-wheels`): exactly the wheels the GPU machine lacks, for its Python.

    python -m bench.gpu_wheels [--dest .whl] [--plan]    # --plan: print the list and sizes known so far, download nothing

The GPU machine (docs/gpu.md) has CUDA torch 2.11, transformers 5.17, peft, accelerate, tokenizers and ~200 other
packages (MACHINE below, as read on such a machine in 2026-11) and no network; at most 64 MiB travel with the
working tree. The list is computed, not written by hand: starting from what the check imports (ROOTS: llmpipe's own
requirements that the training paths use, DeepSpeed, Liger), every ``Requires-Dist`` of the installed distributions
of this project's .venv is followed (markers evaluated for CPython 3.12 on Linux x86_64) and a distribution is
carried when the machine

* lacks it, or
* has a version that fails a requirement on it (transformers 5.17 < llmpipe's >=5.23, huggingface-hub 1.33 <
  transformers 5.25's >=2.4), or
* has it at an unknown version while something requires a range and its wheel is pure Python (small; a compiled
  one, such as pyarrow, is assumed to fit and is checked on the machine by bench/gpu_check.py's first step), or
* has another version than the .venv's and the wheel is pure Python (accelerate 1.15 there, 1.16 tested here).

Each carried one is pinned to the .venv's version (``pip freeze``) and downloaded with ``--no-deps`` for cp312
manylinux x86_64; DeepSpeed has no wheel on PyPI, so its sdist is built here into a pure-Python wheel
(``DS_BUILD_OPS=0``: its ops compile on first use). torch is never carried. The total is compared with the budget
(64 MiB less the working tree); TOO_BIG lists what does not fit, with the reason.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
BUDGET = 64 * 2**20          # the device tool's limit on what travels: working tree + carried paths
MARGIN = 2 * 2**20           # room for files written before the run (results, a stray log)
TARGET_PY = ("3.12", "cp")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")

# What the check imports. llmpipe's requirements minus torch (the machine's CUDA build stays), jieba (BLEU of the
# predict stage), starlette/uvicorn (llmpipe serve and the UI), matplotlib (the machine has it): none of those
# are on the check's paths.
ROOTS = ("hydra-core", "omegaconf", "transformers", "trl", "peft", "datasets", "accelerate", "deepspeed",
         "liger-kernel")
NOT_CARRIED = {"torch": "the machine's CUDA build (2.11.0+cu130) is used; carrying torch (~900 MB) is impossible",
               "jieba": "only the predict stage's BLEU/ROUGE imports it; the check does not run predict",
               "starlette": "llmpipe serve / the UI only", "uvicorn": "llmpipe serve / the UI only"}
# Not in .venv's pip freeze: resolved here, pinned
EXTRA_PINS = {"liger-kernel": "0.8.5"}
# Optional GPU paths whose wheels cannot travel (sizes: the PyPI files of the versions named, 2026-12)
TOO_BIG = {
    "bitsandbytes==0.50.2": "its manylinux_2_24 x86_64 wheel is 41.1 MiB (CUDA kernels for every arch; measured "
                            "2026-12-06): with the ~26 MiB of required wheels and the working tree it exceeds the "
                            "64 MiB budget; CUDA QLoRA (quantization=bnb4) is not checked",
    "vllm": "~400 MiB wheel, and it pins its own torch build: the vLLM inference backend is not checked",
    "flash-attn": "no wheel on PyPI (sdist only; building it needs nvcc and about an hour per arch, and a "
                  "torch-2.11/cu130 build is ~250 MiB): model.flash_attn=fa2 is not checked; padding-free batches "
                  "use llmpipe's varlen SDPA (models/varlen_attention.py) instead",
    "llamafactory==0.9.5": "LLaMA-Factory requires gradio<=5.50 and av<=16 (tens of MiB each) besides a second HF "
                           "stack in its own target folder (transformers 5.6 ~12 MiB, trl 0.24, peft 0.18.1, datasets "
                           "4.0, accelerate 1.11, modelscope, torchdata, tyro, fire...), and bench/lfenv.py builds its "
                           "venv with pip from the network (none there): the GPU benchmark runs llmpipe alone",
}
# The GPU machine's Python packages (device/KINDS.md, 'cuda' image, read 2026-11-17), versions where a session's
# `pip list` showed them (2026-11); None: present, version unknown
_KNOWN = {"accelerate": "1.15.0", "huggingface-hub": "1.33.0", "numpy": "2.5.2", "safetensors": "0.8.0",
          "tokenizers": "0.23.2", "torch": "2.11.0", "torchvision": "0.26.0", "transformers": "5.17.0",
          "triton": "3.6.0", "sentencepiece": "0.2.2", "tiktoken": "0.14.0", "onnx": "1.23.1", "jax": "0.11.2"}
_PRESENT = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers
flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py
markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham
simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp"""
MACHINE: dict[str, str | None] = {**{n: None for n in _PRESENT.split()}, **_KNOWN}
# Carried whatever the machine has: llmpipe pins peft to 0.21.x and the machine's version is unknown
FORCE = ("peft",)


def canon(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def venv_metadata(python: Path = VENV_PY) -> dict[str, dict]:
    """name -> {version, requires, pure} of every distribution installed in the project's .venv."""
    code = r"""
import json, importlib.metadata as md
out = {}
for d in md.distributions():
    tags = [l.split(":", 1)[1].strip() for l in (d.read_text("WHEEL") or "").splitlines() if l.startswith("Tag:")]
    out[d.metadata["Name"]] = {"version": d.version, "requires": d.requires or [],
                               "pure": bool(tags) and all(t.endswith("-none-any") for t in tags)}
print(json.dumps(out))
"""
    raw = json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout)
    return {canon(k): v for k, v in raw.items()}


def _requirements(lines, env) -> list:
    from packaging.requirements import Requirement

    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def closure(meta: dict[str, dict], machine: dict[str, str | None] = MACHINE, roots=ROOTS, force=FORCE,
            extra_pins: dict[str, str] | None = None, extra_requires: dict[str, list[str]] | None = None) -> dict:
    """{carry: {name: {version, why, needed}}, assumed: {name: specifiers}, skipped: {name: why}}.

    The roots carry llmpipe's own specifiers (its installed metadata in ``meta``); the requirements of every
    carried distribution are followed until nothing changes (a distribution the machine keeps brings its own
    dependencies there). ``extra_pins`` / ``extra_requires`` stand in for distributions .venv lacks (liger)."""
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    extra_pins = {canon(k): v for k, v in (extra_pins if extra_pins is not None else EXTRA_PINS).items()}
    extra_requires = extra_requires if extra_requires is not None else {"liger-kernel": ["torch>=2.1.2",
                                                                                         "triton>=2.3.1"]}
    machine = {canon(k): v for k, v in machine.items()}
    env = {"python_version": TARGET_PY[0], "python_full_version": TARGET_PY[0] + ".3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "os_name": "posix", "platform_python_implementation": "CPython", "extra": ""}
    own = {str(canonicalize_name(r.name)): r.specifier
           for r in _requirements(meta.get("llmpipe", {}).get("requires", []), env)}
    carry: dict[str, dict] = {}
    assumed: dict[str, str] = {}
    while True:
        specs = {canon(r): own.get(canon(r), SpecifierSet()) for r in roots}
        for name in carry:
            for req in _requirements(meta[name]["requires"] if name in meta else extra_requires.get(name, []), env):
                dep = str(canonicalize_name(req.name))
                specs[dep] = specs.get(dep, SpecifierSet()) & req.specifier
        new, assumed = {}, {}
        for name in sorted(set(specs) - set(NOT_CARRIED)):
            have, spec = machine.get(name, "absent"), specs[name]
            if name in force:
                why = f"pinned by llmpipe ({own.get(name) or 'any'}); machine's version {have or 'unknown'}"
            elif have == "absent":
                why = "not on the machine"
            elif have is not None and not spec.contains(have, prereleases=True):
                why = f"machine has {have}, needed {spec}"
            elif have is None and str(spec) and meta.get(name, {}).get("pure", True):
                why = f"machine's version unknown, needed {spec} (pure Python, small)"
            elif have is not None and name in meta and have != meta[name]["version"] and meta[name]["pure"]:
                why = f"machine has {have}, .venv's tested {meta[name]['version']} (pure Python, small)"
            else:
                if have is None and str(spec):
                    assumed[name] = str(spec)
                continue
            version = meta[name]["version"] if name in meta else extra_pins.get(name)
            if version is None:
                raise SystemExit(f"gpu_wheels: {name} is needed but neither in .venv nor pinned in EXTRA_PINS")
            new[name] = {"version": version, "why": why, "needed": str(spec)}
        if new == carry:
            return {"carry": carry, "assumed": assumed, "skipped": dict(NOT_CARRIED)}
        carry = new


def download(carry: dict, dest: Path, python: Path = VENV_PY, log=print) -> None:
    """Fetch each carried wheel into ``dest`` (cp312 manylinux x86_64, --no-deps); DeepSpeed is built from its
    sdist. Wheels already there at the right version are kept; other versions of a carried name are removed."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, info in carry.items():
        have = [p for p in dest.glob("*.whl") if canon(p.name.split("-")[0]) == name]
        if any(p.name.split("-")[1] == info["version"] for p in have):
            continue
        for p in have:
            p.unlink()
        spec = f"{name}=={info['version']}"
        env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}   # the Makefile's are for .venv
        log(f"gpu_wheels: {spec} ({info['why']})")
        cmd = [str(python), "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", TARGET_PY[0], "--implementation", TARGET_PY[1], "-d", str(dest), spec]
        for plat in PLATFORMS:
            cmd += ["--platform", plat]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:   # sdist only (deepspeed, antlr4 4.9.3)
            log(f"gpu_wheels: no binary wheel of {spec}; building a pure-Python one from its sdist")
            # DeepSpeed's setup imports torch (.venv's), and DS_BUILD_OPS=0 leaves its ops to compile on first use
            iso = ["--no-build-isolation"] if name == "deepspeed" else []
            subprocess.run([str(python), "-m", "pip", "wheel", "-q", "--no-deps", *iso, "-w", str(dest), spec],
                           check=True, env={**env, "DS_BUILD_OPS": "0"})
            built = [p for p in dest.glob("*.whl") if canon(p.name.split("-")[0]) == name]
            if not built or not all(p.name.endswith("-none-any.whl") for p in built):
                raise SystemExit(f"gpu_wheels: {spec} built {built}, not a pure-Python wheel: it cannot travel")
        if not any(canon(p.name.split("-")[0]) == name for p in dest.glob("*.whl")):
            raise SystemExit(f"gpu_wheels: no wheel of {name} landed in {dest}")


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of what travels besides the wheels: tracked files and untracked files git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout
    return sum((root / p).stat().st_size for p in out.decode().split("\0") if p and (root / p).is_file())


def report(plan: dict, dest: Path, tree: int) -> dict:
    wheels = {p.name: p.stat().st_size for p in sorted(dest.glob("*.whl"))}
    total = sum(wheels.values())
    room = BUDGET - MARGIN - tree
    return {"wheels": wheels, "total_bytes": total, "tree_bytes": tree, "budget_bytes": BUDGET,
            "room_bytes": room, "fits": total <= room, "carry": plan["carry"], "assumed": plan["assumed"],
            "not_carried": plan["skipped"], "too_big": TOO_BIG}


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_wheels", description=__doc__.split("\n")[0])
    ap.add_argument("--dest", type=Path, default=ROOT / ".whl")
    ap.add_argument("--plan", action="store_true", help="print what would be carried; download nothing")
    a = ap.parse_args(argv)
    plan = closure(venv_metadata())
    if not a.plan:
        download(plan["carry"], a.dest)
        for p in a.dest.glob("*.whl"):   # one version of each, nothing stale: two stop the whole install
            if canon(p.name.split("-")[0]) not in plan["carry"]:
                p.unlink()
    rep = report(plan, a.dest, tree_bytes())
    for name, info in plan["carry"].items():
        print(f"carry   {name + '==' + info['version']:<36} {info['why']}")
    for name, spec in rep["assumed"].items():
        print(f"assumed {name} {spec} (compiled; the machine's version is checked by gpu_check)")
    for name, why in {**rep["not_carried"], **TOO_BIG}.items():
        print(f"left    {name}: {why}")
    if not a.plan:
        (a.dest / "wheels.json").write_text(json.dumps(rep, indent=1) + "\n")
        print(f"wheels: {len(rep['wheels'])} files, {_mib(rep['total_bytes'])}; working tree "
              f"{_mib(rep['tree_bytes'])}; room {_mib(rep['room_bytes'])} of {_mib(BUDGET)} (less a "
              f"{_mib(MARGIN)} margin): {'fits' if rep['fits'] else 'DOES NOT FIT'}")
        return 0 if rep["fits"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
