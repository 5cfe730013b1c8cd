"""Every error meant for users (a subclass of llmpipe.errors.UserError) ends as one clean line through the real
CLI: its message on stderr, its exit code, no traceback. The subclasses are discovered, not listed, so a new
one is covered the day it is written."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

MESSAGE = "a message that says everything"


# Found in a child process: importing every module of llmpipe here would change this test process (modules
# that bind sys.stdout at import, library set-up) for the tests that run after this file.
FIND = """
import importlib, pkgutil, llmpipe
from llmpipe.errors import UserError
for info in pkgutil.walk_packages(llmpipe.__path__, "llmpipe."):
    if not info.name.endswith("__main__"):
        try:
            importlib.import_module(info.name)
        except ImportError:   # an optional back-end (vLLM, ...) this machine lacks
            pass
found, todo = set(), [UserError]
while todo:
    for sub in todo.pop().__subclasses__():
        if sub not in found and sub.__module__.startswith("llmpipe."):
            found.add(sub)
            todo.append(sub)
for c in sorted(found, key=lambda c: (c.__module__, c.__qualname__)):
    print(c.__module__, c.__qualname__, c.exit_code)
"""


def _user_errors() -> list[tuple[str, str, int]]:
    """(module, class name, exit code) of every subclass of UserError in llmpipe."""
    out = subprocess.run([sys.executable, "-c", FIND], capture_output=True, text=True, timeout=300, check=True)
    return [(m, n, int(code)) for m, n, code in (line.split() for line in out.stdout.splitlines())]


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
    names = {name for _, name, _ in ERRORS}
    assert {"StageNotAvailable", "PaddingFreeError", "PackingIsolationError", "DataError", "ExportError",
            "LaunchError", "ConfigError"} <= names


@pytest.mark.parametrize("module, name, exit_code", ERRORS, ids=[name for _, name, _ in ERRORS])
def test_a_user_error_prints_its_message_and_no_traceback(module, name, exit_code, tmp_path):
    out = subprocess.run([sys.executable, "-c", DRIVER, module, name, str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == exit_code, out.stderr[-3000:]
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
