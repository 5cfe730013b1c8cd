"""Every error meant for users (a subclass of llmpipe.errors.UserError) ends as one clean line through the real
CLI: its message on stderr, its exit code, no traceback. The subclasses are discovered, not listed, so a new
one is covered the day it is written."""
from __future__ import annotations

import json
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

# Raise each class from the first stage of a real run of the real entry point (python -m llmpipe): one process
# imports the CLI once, then forks one child per class; each child runs ``cli()`` from a pristine state with its
# own stdout/stderr files and exits with the CLI's own code. (A fresh interpreter per class cost ~5 s each.)
DRIVER = textwrap.dedent("""
    import importlib, json, os, sys
    root, names = sys.argv[1], sys.argv[2:]
    from llmpipe.__main__ import cli
    from llmpipe.problems import ConfigError, Problem
    from llmpipe.stages import kinds
    import llmpipe.pipeline.session  # noqa: F401  (what a run imports before its first stage,
    import torch  # noqa: F401  torch included: imported before any stage, it is most of the start-up)
    # and transformers' top level, which a run imports before its first stage too (quiet_libraries: ~2 s a
    # child), after the same environment defaults (transformers and the hub read them at import)
    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS",
                "TRANSFORMERS_NO_ADVISORY_WARNINGS", "TRL_EXPERIMENTAL_SILENCE"):
        os.environ.setdefault(var, "1")
    import transformers.utils.logging  # noqa: F401

    def child(module, name, job):
        cls = getattr(importlib.import_module(module), name)

        def boom(ctx):
            if cls is ConfigError or issubclass(cls, ConfigError):
                raise cls([Problem("train.stage", "x", "{message}")])
            raise cls("{message}")

        object.__setattr__(kinds.LOAD, "run", boom)
        sys.argv = ["llmpipe", "model=tiny", "data.dataset=demo_sft", "train.do_train=true",
                    f"run.cache_root={{job}}/store", f"hydra.run.dir={{job}}/job"]
        cli()

    results = {{}}
    for spec in names:
        module, name = spec.split(":")
        job = os.path.join(root, name)
        os.makedirs(job)
        out, err = os.path.join(job, "stdout"), os.path.join(job, "stderr")
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT), 1)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT), 2)
            code = 0
            try:
                child(module, name, job)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                import traceback; traceback.print_exc(); code = 99
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        results[name] = [os.waitstatus_to_exitcode(status), open(out).read(), open(err).read()]
    print(json.dumps(results))
""").format(message=MESSAGE)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> (exit code, stdout, stderr) of the real CLI raising that class from its first stage."""
    root = tmp_path_factory.mktemp("user-errors")
    out = subprocess.run([sys.executable, "-c", DRIVER, str(root), *(f"{m}:{n}" for m, n, _ in ERRORS)],
                         capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_errors_that_used_to_end_as_tracebacks_are_user_errors():
    names = {name for _, name, _ in ERRORS}
    assert {"StageNotAvailable", "PaddingFreeError", "PackingIsolationError", "DataError", "ExportError",
            "LaunchError", "ConfigError"} <= names


@pytest.mark.parametrize("module, name, exit_code", ERRORS, ids=[name for _, name, _ in ERRORS])
def test_a_user_error_prints_its_message_and_no_traceback(runs, module, name, exit_code):
    code, stdout, stderr = runs[name]
    assert code == exit_code, stderr[-3000:]
    assert MESSAGE in stderr
    assert "Traceback" not in stderr + stdout, stderr[-3000:]
    assert "stage load failed" in stderr


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
