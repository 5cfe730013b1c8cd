"""Fixtures shared by every test folder."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def shared_builtin_cache(tmp_path_factory):
    """One folder for the built-in models (``LLMPIPE_BUILTIN_CACHE``) for the whole session, so the
    pretrained ``builtin:tiny`` is built once, not once per temporary store or per xdist worker. Subprocesses
    inherit it.
    A value already set outside (e.g. a persistent folder on a developer machine) is kept."""
    if os.environ.get("LLMPIPE_BUILTIN_CACHE"):
        yield os.environ["LLMPIPE_BUILTIN_CACHE"]
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):   # `make test` runs two workers: they share one folder (a file lock
        base = tmp_path_factory.getbasetemp().parent   # keeps them from building a model twice)
        (base / "builtin_models").mkdir(exist_ok=True)
        path = str(base / "builtin_models")
    else:
        path = str(tmp_path_factory.mktemp("builtin_models"))
    os.environ["LLMPIPE_BUILTIN_CACHE"] = path
    try:
        yield path
    finally:
        os.environ.pop("LLMPIPE_BUILTIN_CACHE", None)


@pytest.hookimpl(tryfirst=True)   # before xdist turns the group marks into node ids (its hook has no order)
def pytest_collection_modifyitems(config, items):
    """Under ``make test`` (xdist, ``--dist loadgroup``) a test file whose tests share a module- or class-scoped
    fixture (a trained store, a started server) runs on one worker, so the fixture is built once; every other
    test is handed out on its own, so the two workers finish together instead of one waiting on a long file."""
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            info = getattr(item, "_fixtureinfo", None)
            defs = info.name2fixturedefs.values() if info else ()
            if any(d[-1].scope in ("module", "class", "package") for d in defs if d):
                item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
        if getattr(config.option, "loadgroup", False):   # on an xdist worker under --dist loadgroup
            _group_node_id(item)


def _group_node_id(item) -> None:
    """xdist's scheduler groups tests by a ``@group`` suffix of the node id, which xdist 3.8 writes to
    ``item._nodeid``; pytest 9 reads node ids from ``item._id``, so without this every group was split across
    the workers and each worker built the shared fixtures again (measured: test_engine's, test_export's and
    test_mc_eval's module fixtures built twice)."""
    from _pytest.nodeid import coerce_node_id

    names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                    for m in item.iter_markers("xdist_group")})
    if names and item.nodeid.rfind("@") <= item.nodeid.rfind("]"):
        item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Under xdist (``make test``), the controller starts building ``builtin:tiny`` into the workers' shared folder
    (see ``shared_builtin_cache``) in the background at once: the build (~80 CPU s, one thread) overlaps the
    workers' start-up and collection instead of one worker building it while the other waits on its lock. The
    build is the one ``ensure_builtin`` does (same lock, same folder); nothing else changes."""
    import subprocess
    import sys

    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    if os.environ.get("LLMPIPE_BUILTIN_CACHE") or config.option.collectonly:
        return
    path = config._tmp_path_factory.getbasetemp() / "builtin_models"
    path.mkdir(exist_ok=True)
    code = "import sys; from llmpipe.models.builtin import ensure_builtin; ensure_builtin('builtin:tiny', sys.argv[1])"
    config._llmpipe_prebuild = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], env={**os.environ, "LLMPIPE_BUILTIN_CACHE": str(path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def pytest_unconfigure(config):
    """A background build still running when the session ends (a short run) is stopped."""
    import signal

    proc = getattr(config, "_llmpipe_prebuild", None)
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
