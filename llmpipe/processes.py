"""Processes working beside one another: children that die with llmpipe, and jobs that take turns on a file
lock. A foundation module (no llmpipe imports), so that every layer can use it: the launcher (``launch``),
the export verifier and git (``exporting``), the export folder's lock.

``dies_with_parent()`` is a function for ``subprocess.Popen(preexec_fn=...)``: on Linux the child asks the
kernel for SIGTERM (``PR_SET_PDEATHSIG``) when its parent goes, even by ``kill -9``, so it is not left running
as an orphan. Elsewhere it is None (no preexec_fn). The signal follows the *thread* that started the child:
start such children from a thread that lives as long as they do (the main thread, as llmpipe does).
"""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

_PR_SET_PDEATHSIG = 1


def dies_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn that gives the child ``sig`` when this process dies. libc is loaded here, in the parent;
    the child only makes the call (nothing that allocates or takes locks runs between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_pdeathsig() -> None:   # pragma: no cover - runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:   # the parent died before the call: the kernel will not signal us
            os.kill(os.getpid(), sig)

    return set_pdeathsig


@contextmanager
def file_lock(path: str | os.PathLike, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the FileLock ``path`` (its folder is created); ``on_wait`` is called once when another process
    holds it, before waiting for it. Not re-entrant: two FileLock objects on one path in one process block.
    While it waits, the process leaves a marker beside the lock, so the holder can count the jobs of this
    machine that wait for it (:func:`waiting`)."""
    from filelock import FileLock, Timeout

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        marker = Path(f"{path}{_WAITING}{_HOST}-{os.getpid()}")
        try:
            marker.touch()
        except OSError:
            marker = None
        try:
            if on_wait:
                on_wait()
            lock.acquire()
        finally:
            if marker is not None:
                marker.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.release()


_WAITING = ".waiting-"
_HOST = os.uname().nodename.replace("-", "_") if hasattr(os, "uname") else "host"


def waiting(path: str | os.PathLike) -> int:
    """How many live processes of this machine wait for the file lock ``path`` (see :func:`file_lock`).
    Markers of other machines (a store on a shared filesystem) and of processes that died are not counted."""
    lock = Path(path)
    count = 0
    try:
        markers = list(lock.parent.glob(f"{lock.name}{_WAITING}{_HOST}-*"))
    except OSError:
        return 0
    for marker in markers:
        try:
            os.kill(int(marker.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            continue
        except PermissionError:
            pass   # alive, another user's
        count += 1
    return count
