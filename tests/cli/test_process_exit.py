"""How the command's process ends (llmpipe.__main__.run_cli): a run that ran nothing (a refused config, --help)
ends without the interpreter's teardown, with every line of its output written; anything else exits as Python
does."""
from __future__ import annotations

import subprocess
import sys

import pytest

import llmpipe.__main__ as entry


def _llmpipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmpipe", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def _in_process_cli(*args: str) -> subprocess.CompletedProcess:
    code = f"import sys; sys.argv = ['llmpipe', *{list(args)!r}]; from llmpipe.__main__ import cli; cli()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def test_a_refusal_is_complete_and_exits_2_through_a_pipe(tmp_path):
    args = ("model=tiny", "data.dataset=demo_sft", "train.do_train=true", "data.template=chatmlx",
            "quantization.bit=3", f"hydra.run.dir={tmp_path / 'run'}")
    fast, plain = _llmpipe(*args), _in_process_cli(*args)
    assert fast.returncode == plain.returncode == 2
    assert fast.stderr == plain.stderr and "data.template" in fast.stderr and "quantization.bit" in fast.stderr
    assert fast.stderr.rstrip().endswith("describes any parameter)")
    assert not (tmp_path / "run").exists()


def test_help_is_complete():
    fast, plain = _llmpipe("--help"), _in_process_cli("--help")
    assert fast.returncode == plain.returncode == 0
    assert fast.stdout == plain.stdout and len(fast.stdout.splitlines()) > 50


def test_a_process_that_imported_torch_exits_as_python_does(monkeypatch):
    pytest.importorskip("torch")
    import torch  # noqa: F401  (a stage started: its files, threads and atexit handlers need the teardown)

    def refused():
        raise SystemExit(2)

    monkeypatch.setattr(entry, "cli", refused)
    monkeypatch.setattr(entry, "_exit_now", lambda code: pytest.fail("the teardown was skipped"))
    with pytest.raises(SystemExit) as exc:
        entry.run_cli()
    assert exc.value.code == 2
    monkeypatch.setattr(entry, "cli", lambda: None)
    monkeypatch.setattr(sys, "argv", ["llmpipe", "--help"])
    entry.run_cli()   # returns: torch is imported, so no shortcut either
