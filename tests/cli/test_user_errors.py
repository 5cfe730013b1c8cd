"""Every error meant for users (a subclass of llmpipe.errors.UserError) ends as one clean line through the real
CLI: its message on stderr, its exit code, no traceback. The subclasses are discovered, not listed, so a new
one is covered the day it is written."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap

import pytest

import llmpipe
from llmpipe.errors import UserError

MESSAGE = "a message that says everything"


def _user_errors() -> list[type]:
    for info in pkgutil.walk_packages(llmpipe.__path__, "llmpipe."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:   # an optional back-end (vLLM, ...) this machine lacks
            continue
    found, todo = set(), [UserError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found and sub.__module__.startswith("llmpipe."):
                found.add(sub)
                todo.append(sub)
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


ERRORS = _user_errors()

# Raise ``cls`` from the first stage of a real run of the real entry point (python -m llmpipe).
DRIVER = textwrap.dedent("""
    import importlib, sys
    module, name, root = sys.argv[1:4]
    cls = getattr(importlib.import_module(module), name)
    from llmpipe.problems import ConfigError, Problem
    from llmpipe.stages import kinds

    def boom(ctx):
        if cls is ConfigError or issubclass(cls, ConfigError):
            raise cls([Problem("train.stage", "x", "{message}")])
        raise cls("{message}")

    object.__setattr__(kinds.LOAD, "run", boom)
    sys.argv = ["llmpipe", "model=tiny", "data.dataset=demo_sft", "train.do_train=true",
                f"run.cache_root={{root}}/store", f"hydra.run.dir={{root}}/job"]
    from llmpipe.__main__ import cli
    cli()
""").format(message=MESSAGE)


def test_the_errors_that_used_to_end_as_tracebacks_are_user_errors():
    names = {c.__name__ for c in ERRORS}
    assert {"StageNotAvailable", "PaddingFreeError", "PackingIsolationError", "DataError", "ExportError",
            "LaunchError", "ConfigError"} <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_a_user_error_prints_its_message_and_no_traceback(cls, tmp_path):
    out = subprocess.run([sys.executable, "-c", DRIVER, cls.__module__, cls.__qualname__, str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == cls.exit_code, out.stderr[-3000:]
    assert MESSAGE in out.stderr
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    assert "stage load failed" in out.stderr


def test_chat_and_serve_print_user_errors_cleanly(capsys):
    from llmpipe.interactive import run_clean
    from llmpipe.models.loading import ModelSourceError

    def main(argv):
        raise ModelSourceError(MESSAGE)

    assert run_clean(main, [], "llmpipe.chat") == 1
    assert capsys.readouterr().err.strip() == f"llmpipe.chat: {MESSAGE}"


def test_other_exceptions_keep_their_traceback():
    from llmpipe.interactive import run_clean

    def main(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        run_clean(main, [], "llmpipe.chat")
