"""What a kill -9 of llmpipe leaves while exporting: the verifier child dies with it (PR_SET_PDEATHSIG through
``llmpipe.processes.dies_with_parent``), and the hidden staging folders of a killed export are removed by the
next export to the same folder (all of them under the export lock; those of dead processes without it)."""
from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmpipe.exporting import folder as xfolder

LLMPIPE = Path(xfolder.__file__).resolve().parents[1]

PARENT = """
import sys
from llmpipe.exporting.verify import verify
sys.executable = sys.argv[1]   # the "python" the verifier runs: a script that records its pid and hangs
verify({"model": "m"}, sys.argv[2])
"""
FAKE_PYTHON = """#!/bin/sh
echo $$ > "{pidfile}.tmp" && mv "{pidfile}.tmp" "{pidfile}"
exec sleep 120
"""


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie nobody reaped yet (its reaper may be a container's pid 1)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _wait_for(check, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_the_verifier_child_dies_with_a_killed_llmpipe(tmp_path):
    pidfile = tmp_path / "child.pid"
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON.format(pidfile=pidfile))
    fake.chmod(0o755)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(fake), str(tmp_path / "work")])
    child = None
    try:
        assert _wait_for(pidfile.exists, 30), "the verifier child never started"
        child = int(pidfile.read_text())
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert _wait_for(lambda: _gone(child), 5), f"verifier child {child} outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)


def _calls_without_preexec(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"
                and node.func.attr in ("run", "Popen", "call", "check_call", "check_output")
                and not any(k.arg == "preexec_fn" for k in node.keywords)):
            lines.append(node.lineno)
    return lines


def test_every_child_llmpipe_starts_dies_with_it():
    """The launcher, the export verifier, git (a push can hang on the network) and llmpipe-tools export (the
    whole pipeline as its child) all get PR_SET_PDEATHSIG."""
    found = {str(p.relative_to(LLMPIPE)): lines for p in sorted(LLMPIPE.rglob("*.py"))
             if (lines := _calls_without_preexec(p))}
    assert not found, found


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_killed_publish_is_cleaned_and_the_next_export_completes(tmp_path):
    """kill -9 between the two renames of publish: the previous export moved aside ('old-PID'), the new one
    complete in its staging folder, export.dir missing. The next run's staging removes both; it publishes."""
    dest = tmp_path / "exp"
    pid = _dead_pid()
    for name in (f".exp{xfolder._TMP}{pid}", f".exp{xfolder._TMP}old-{pid}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / xfolder.MARKER).write_text("{}")
    with xfolder.locked(dest):
        xfolder.check_destination(dest)
        with xfolder.staging(dest, holding_lock=True) as tmp:
            (tmp / "config.json").write_text("{}")
            xfolder.publish(tmp, dest, "fp-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".exp{xfolder._LOCK}", "exp"]
    assert xfolder.is_current(dest, "fp-1")


def test_live_staging_folders_are_removed_only_under_the_lock(tmp_path):
    """A staging folder whose pid is alive may be another job's export in progress: left alone without the
    lock. Under the lock nobody else exports there (a pid reused by another program must not keep it forever)."""
    dest = tmp_path / "exp"
    live = tmp_path / f".exp{xfolder._TMP}{os.getppid()}"
    dead = tmp_path / f".exp{xfolder._TMP}{_dead_pid()}"
    live.mkdir()
    dead.mkdir()
    assert xfolder.clean_stale(dest) == [dead] and live.exists()
    with xfolder.locked(dest):
        assert xfolder.clean_stale(dest, holding_lock=True) == [live]
