"""The wheel is self-contained: conf/ and recipes/ ship inside it (llmpipe.conf, llmpipe.recipes) together
with the search-path plugin, and ``python -m llmpipe`` works from it with the source checkout out of reach.

The wheel is built from a copy of the checkout (so no build/ or egg-info lands in the working tree),
installed with ``pip install --target``, and run with ``python -S`` (no site-packages .pth files, so the
editable install cannot leak the checkout in) and PYTHONPATH = <wheel site> + the venv's site-packages.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", "outputs",
                                "multirun", ".llmpipe", ".pytest_cache", "bench", ".whl", ".gl")

pytestmark = pytest.mark.timeout(600)   # building the wheel takes a few seconds


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    bundled = sorted(p.stem for p in (src / "recipes" / "recipe").glob("*.yaml"))
    if not bundled:   # before the bundled recipes exist, ship a test-only one in the copy
        (src / "recipes" / "recipe").mkdir(parents=True, exist_ok=True)
        (src / "recipes" / "recipe" / "wheel_check.yaml").write_text(
            "# @package _global_\ndefaults:\n  - override /model: tiny\nlora:\n  rank: 4\n")
        bundled = ["wheel_check"]
    dist = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(dist), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = dist.glob("llmpipe-*.whl")
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(whl)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return whl, site, bundled


def isolated(args: list[str], site: Path, cwd: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -S``: no site-packages processing (the editable .pth of the checkout is never read)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LLMPIPE_RECIPES", "PYTHONHOME")}
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    return subprocess.run([sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_wheel_contents(wheel_site):
    whl, _, bundled = wheel_site
    names = set(zipfile.ZipFile(whl).namelist())
    assert "hydra_plugins/llmpipe_searchpath/__init__.py" in names
    assert "hydra_plugins/__init__.py" not in names            # a namespace package shared by all plugins
    assert "llmpipe/conf/config.yaml" in names and "llmpipe/conf/model/tiny.yaml" in names
    assert {f"llmpipe/recipes/recipe/{b}.yaml" for b in bundled} <= names
    assert "llmpipe/tools/cli.py" in names and "llmpipe/safety.py" in names
    assert not any(n.startswith(("conf/", "recipes/", "tests/")) for n in names)


def test_wheel_has_every_python_module(wheel_site):
    """Every module of the checkout's llmpipe/ ships (pyproject's explicit package list is complete)."""
    whl, _, _ = wheel_site
    names = set(zipfile.ZipFile(whl).namelist())
    src = whl.parent.parent / "src"     # the copy the wheel was built from
    modules = {p.relative_to(src).as_posix() for p in (src / "llmpipe").rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(modules - names)
    assert not missing, f"not in the wheel (add their packages to pyproject.toml): {missing}"


def test_checkout_is_not_importable(wheel_site, tmp_path):
    _, site, _ = wheel_site
    code = ("import llmpipe, llmpipe.resources as r, hydra_plugins.llmpipe_searchpath as p; "
            "print(llmpipe.__file__); print(p.__file__); print(r.conf_path()); print(r.search_path('recipes'))")
    out = isolated(["-c", code], site, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(str(site) in line for line in lines[:2]), lines
    assert str(ROOT) not in out.stdout
    assert lines[2:] == ["pkg://llmpipe.conf", "pkg://llmpipe.recipes"]


def test_compose_from_the_wheel(wheel_site, tmp_path):
    _, site, _ = wheel_site
    r = isolated(["-m", "llmpipe", "model=tiny", "--cfg", "job"], site, tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["model"]["name_or_path"] == "builtin:tiny" and "lora" in cfg


def test_bundled_recipe_from_the_wheel(wheel_site, tmp_path):
    _, site, bundled = wheel_site
    name = "demo" if "demo" in bundled else bundled[0]
    r = isolated(["-m", "llmpipe", f"+recipe={name}", "model=tiny", "--cfg", "job"], site, tmp_path)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["model"]["name_or_path"] == "builtin:tiny"
    info = isolated(["-m", "llmpipe", "--info", "searchpath"], site, tmp_path)
    assert info.returncode == 0, info.stderr
    assert "pkg://llmpipe.conf" in info.stdout and "pkg://llmpipe.recipes" in info.stdout
    assert str(ROOT) not in info.stdout


def test_team_folder_and_tools_from_the_wheel(wheel_site, tmp_path):
    _, site, _ = wheel_site
    team = tmp_path / "team" / "recipe"
    team.mkdir(parents=True)
    (team / "acme_w.yaml").write_text("# @package _global_\nlora:\n  rank: 24\n")
    r = isolated(["-m", "llmpipe", "+recipe=acme_w", "model=tiny", "--cfg", "job"], site, tmp_path,
                 {"LLMPIPE_RECIPES": str(team.parent)})
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["lora"]["rank"] == 24
    ls = isolated(["-m", "llmpipe.tools.cli", "ls"], site, tmp_path)
    assert ls.returncode == 0, ls.stderr
    assert "pkg://llmpipe.recipes" in ls.stdout
    ex = isolated(["-m", "llmpipe.tools.cli", "explain", "lora_rank"], site, tmp_path)
    assert ex.returncode == 0 and ex.stdout.splitlines()[0] == "lora.rank"


def test_duplicate_of_a_bundled_recipe_from_the_wheel(wheel_site, tmp_path):
    """Duplicate detection also reads pkg:// sources (the installed llmpipe.recipes)."""
    _, site, bundled = wheel_site
    name = bundled[0]
    team = tmp_path / "team" / "recipe"
    team.mkdir(parents=True)
    (team / f"{name}.yaml").write_text("# @package _global_\nlora:\n  rank: 24\n")
    r = isolated(["-m", "llmpipe", f"+recipe={name}", "model=tiny", "data.dataset=demo_sft", "train.do_train=true",
                  "run.dry_run=true"], site, tmp_path, {"LLMPIPE_RECIPES": str(team.parent)})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "pkg://llmpipe.recipes" in r.stderr and f"file://{team.parent}" in r.stderr
