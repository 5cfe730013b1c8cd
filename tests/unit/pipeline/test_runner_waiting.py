"""A job that waits for a stage another job computes prepares itself meanwhile: the runner calls its
``before_run`` hook (console quieting) and its ``while_waiting`` hook (the libraries' imports) once, on the
first wait, so that they are not paid after the wait, on a sweep's critical path."""
from __future__ import annotations

from types import SimpleNamespace

from llmpipe.pipeline.runner import Runner


def test_the_first_wait_runs_both_hooks_once_and_in_order(capsys):
    calls = []
    runner = Runner(plan=None, store=None, lock=None)
    runner.before_run = lambda: calls.append("before_run")
    runner.while_waiting = lambda: calls.append("while_waiting")
    node = SimpleNamespace(fingerprint="abcdef0123456789")
    runner._waiting("[1/4] load", node)
    runner._waiting("[2/4] adapt", node)
    assert calls == ["before_run", "while_waiting"]
    out = capsys.readouterr().out
    assert out.count("another job is computing this stage (abcdef0123); waiting") == 2
    # a stage that runs later finds the quieting done: it is not repeated
    runner._starting()
    assert calls == ["before_run", "while_waiting"]
