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


# One driver process imports the CLI once (what a run imports before its first stage), then forks:
# - one child that imports every module of llmpipe and lists the subclasses of UserError (importing them all in
#   the driver itself would change the state the other children start from: modules that bind sys.stdout at
#   import, back-ends a run hides when it does not use them), found at test time rather than at collection, where
#   each xdist worker paid ~14 CPU s for it;
# - then one child per class: each runs ``cli()`` from a pristine state, the class raised by its first stage, with
#   its own stdout/stderr files, and exits with the CLI's own code. (A fresh interpreter per class cost ~5 s each.)
DRIVER = textwrap.dedent("""
    import importlib, json, os, sys
    root = sys.argv[1]
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

    def find(path):
        import pkgutil, llmpipe
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
        rows = [[c.__module__, c.__qualname__, c.exit_code]
                for c in sorted(found, key=lambda c: (c.__module__, c.__qualname__))]
        with open(path, "w") as f:
            json.dump(rows, f)

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

    def forked(target, out, err):
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT), 1)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT), 2)
            code = 0
            try:
                target()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                import traceback; traceback.print_exc(); code = 99
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    listed = os.path.join(root, "errors.json")
    code = forked(lambda: find(listed), os.path.join(root, "find.out"), os.path.join(root, "find.err"))
    if code != 0:
        sys.exit("finding the user errors failed:\\n" + open(os.path.join(root, "find.err")).read()[-3000:])
    errors = json.load(open(listed))
    results = {{}}
    for module, name, _ in errors:
        job = os.path.join(root, name)
        os.makedirs(job)
        out, err = os.path.join(job, "stdout"), os.path.join(job, "stderr")
        code = forked(lambda: child(module, name, job), out, err)
        results[name] = [code, open(out).read(), open(err).read()]
    print(json.dumps({{"errors": errors, "results": results}}))
""").format(message=MESSAGE)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"errors": [[module, class name, exit code], ...] of every subclass of UserError in llmpipe,
    "results": {class name: [exit code, stdout, stderr]} of the real CLI raising that class from its first stage}."""
    root = tmp_path_factory.mktemp("user-errors")
    out = subprocess.run([sys.executable, "-c", DRIVER, str(root)], capture_output=True, text=True, timeout=900,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_errors_that_used_to_end_as_tracebacks_are_user_errors(runs):
    names = {name for _, name, _ in runs["errors"]}
    assert {"StageNotAvailable", "PaddingFreeError", "PackingIsolationError", "DataError", "ExportError",
            "LaunchError", "ConfigError"} <= names


def test_every_user_error_prints_its_message_and_no_traceback(runs):
    """Each discovered class (one failure line per class that misbehaves)."""
    wrong = []
    for module, name, exit_code in runs["errors"]:
        code, stdout, stderr = runs["results"][name]
        if code != exit_code:
            wrong.append(f"{module}.{name}: exit {code}, not {exit_code}: {stderr[-1500:]}")
        elif MESSAGE not in stderr or "stage load failed" not in stderr:
            wrong.append(f"{module}.{name}: stderr lacks the message or the failed stage: {stderr[-1500:]}")
        elif "Traceback" in stderr + stdout:
            wrong.append(f"{module}.{name}: a traceback: {stderr[-1500:]}")
    assert len(runs["errors"]) == len(runs["results"]) > 0
    assert not wrong, "\n".join(wrong)


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
