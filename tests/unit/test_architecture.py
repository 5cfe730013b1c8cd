"""The architecture contract (docs/architecture.md): layers import only downwards, the backends do not import
one another, and nothing imports in a circle. The contracts live in pyproject.toml ([tool.importlinter]) and
are checked here with import-linter on every `make test`, so an upward import fails CI."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the llmpipe package found in ``root`` (its pyproject.toml holds the contracts)."""
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 broken" in out.stdout


@pytest.fixture
def copy_of_package(tmp_path) -> Path:
    shutil.copytree(ROOT / "llmpipe", tmp_path / "llmpipe", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize("module, line, broken", [
    # a backend reaching up into the stages, inside a function (lazy imports count)
    ("training/job.py", "def _x():\n    from llmpipe.stages.base import StageContext\n", "Layers import downwards"),
    # launch reaching up into the runner
    ("launch/stage.py", "def _x():\n    from llmpipe.pipeline import runner\n", "Layers import downwards"),
    # one backend importing a sibling
    ("infer/engine.py", "def _x():\n    from llmpipe.exporting import folder\n", "Layers import downwards"),
    # a cycle inside one package
    ("data/sources.py", "def _x():\n    from llmpipe.data import registry\n", "No import cycles"),
])
def test_the_contracts_catch_an_upward_import_or_a_cycle(copy_of_package, module, line, broken):
    with open(copy_of_package / "llmpipe" / module, "a", encoding="utf-8") as f:
        f.write("\n\n" + line)
    out = lint(copy_of_package)
    assert out.returncode != 0
    assert f"{broken}" in out.stdout and "BROKEN" in out.stdout, out.stdout


def test_every_top_level_module_sits_in_a_layer():
    """exhaustive=true refuses a package the layers do not name; check the contract says so."""
    text = (ROOT / "pyproject.toml").read_text()
    assert "exhaustive = true" in text
    names = {p.stem if p.is_file() else p.name for p in (ROOT / "llmpipe").iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    layers = text.split("layers = [", 1)[1].split("]", 1)[0]
    named = {n.strip().strip('"') for part in layers.replace("|", ":").split(",") for n in part.split(":")}
    assert names <= {n.strip().strip('"').strip() for n in named}, names - named
