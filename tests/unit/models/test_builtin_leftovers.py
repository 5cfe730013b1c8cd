"""A built-in model build killed with SIGKILL leaves its temp folder (``<models>/.<folder>.tmp-*``);
``models.builtin.ensure_builtin`` (the one way llmpipe gets a built-in model) removes it under the build lock
before building. The build itself is replaced by a stub: only the leftover handling is under test (tiny.py
stays as it is; its bytes are part of the models' identity)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from llmpipe.models import builtin, tiny

LLMPIPE = Path(builtin.__file__).resolve().parents[1]

HANGING_BUILD = """
import sys, time
from pathlib import Path
from llmpipe.models import builtin, tiny

def build_into(name, out):
    (Path(out) / "half-written.bin").write_bytes(b"x" * 1000)
    print("building", flush=True)
    time.sleep(120)

tiny.build_into = build_into
builtin.ensure_builtin("builtin:tiny", sys.argv[1])
"""


def _quick_build(name, out):
    (Path(out) / "config.json").write_text("{}")
    return Path(out)


def test_a_build_killed_by_sigkill_leaves_nothing_after_the_next_ensure(tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv(tiny.BUILTIN_CACHE_ENV, str(models))
    child = subprocess.Popen([sys.executable, "-c", HANGING_BUILD, str(tmp_path / "root")], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(LLMPIPE.parent)})
    try:
        # ensure_builtin says "building builtin:tiny on first use ..." first, then the stub's line comes
        assert "building" in [child.stdout.readline().strip() for _ in range(2)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    folder = tiny.folder_name("builtin:tiny")
    stale = builtin.leftovers(models, folder)
    assert len(stale) == 1 and (stale[0] / "half-written.bin").is_file()   # what a kill -9 leaves

    monkeypatch.setattr(tiny, "build_into", _quick_build)
    final = builtin.ensure_builtin("builtin:tiny", tmp_path / "root")
    assert final == models / folder and (final / tiny.COMPLETE).is_file()
    assert builtin.leftovers(models, folder) == [] and not stale[0].exists()


def test_leftovers_of_a_built_model_are_removed_too_and_other_models_are_left_alone(tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv(tiny.BUILTIN_CACHE_ENV, str(models))
    monkeypatch.setattr(tiny, "build_into", _quick_build)
    final = builtin.ensure_builtin("builtin:tiny", tmp_path)
    mine = models / f".{final.name}.tmp-killed"
    other = models / f".{tiny.folder_name('builtin:bench')}.tmp-live"
    mine.mkdir()
    other.mkdir()
    assert builtin.ensure_builtin("builtin:tiny", tmp_path) == final
    assert not mine.exists() and other.exists()   # only the model asked for: its lock is the one held
    assert builtin.remove_leftovers("builtin:tiny", tmp_path) == []   # nothing left: no lock taken


def test_llmpipe_gets_built_in_models_only_through_the_clean_up():
    """tiny.ensure_builtin alone never removes a killed build's folder: every caller goes through builtin."""
    callers = [str(p.relative_to(LLMPIPE)) for p in LLMPIPE.rglob("*.py")
               if p.name not in ("tiny.py", "builtin.py") and "ensure_builtin" in p.read_text()
               and ("tiny import ensure_builtin" in p.read_text() or "tiny.ensure_builtin" in p.read_text())]
    assert callers == []
