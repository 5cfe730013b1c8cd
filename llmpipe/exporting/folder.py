"""The export folder (``export.dir``) is written atomically: everything goes into a hidden sibling folder,
the marker file (:data:`MARKER`, with the stage fingerprint and the size of every file) is written last, and
the folder is then swapped into place. A failed or killed export (a full disk included) leaves no folder
that looks complete, and a previous export stays as it was. A folder holding files llmpipe did not write is
never touched. Torch-free: the "already exported" decision is taken before any model library is imported.

Two jobs exporting to one folder take turns: :func:`locked` holds a file lock next to it
(``.<name>.llmpipe-lock``) while one of them stages, verifies and publishes; the other then finds the
folder current (same fingerprint) and leaves it as it is. Under that lock every staging folder of the target
is a leftover of a killed run and is removed; without it only those whose process is gone are.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from llmpipe.config.families.export import EXPORT_MARKER
from llmpipe.exporting.errors import ExportError
from llmpipe.processes import file_lock

MARKER = EXPORT_MARKER
_TMP = ".llmpipe-tmp-"
_LOCK = ".llmpipe-lock"


def check_destination(dest: Path) -> None:
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"export.dir={dest} is a file; choose a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MARKER).is_file():
        raise ExportError(f"export.dir={dest} already exists and holds files llmpipe did not write; "
                          "choose an empty or new folder (llmpipe only replaces its own exports)")


def read_marker(dest: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(dest) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_current(dest: Path, fingerprint: str) -> bool:
    """``dest`` holds a complete export of ``fingerprint`` (every recorded file present, same size)."""
    info = read_marker(dest)
    if not info or info.get("fingerprint") != fingerprint:
        return False
    files = info.get("files") or {}
    try:
        return bool(files) and all((Path(dest) / n).stat().st_size == size for n, size in files.items())
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_path(dest: Path) -> Path:
    return Path(dest).parent / f".{Path(dest).name}{_LOCK}"


def locked(dest: Path, on_wait: Callable[[], None] | None = None):
    """A context manager holding the export lock of ``dest`` (``on_wait`` is called once if another job
    holds it). Not re-entrant."""
    return file_lock(lock_path(dest), on_wait)


def clean_stale(dest: Path, *, holding_lock: bool = False) -> list[Path]:
    """Remove hidden staging folders of exports to ``dest`` left by a killed run; returns them. With
    ``holding_lock`` (this process holds :func:`locked`) nobody else is exporting there, so every one is
    stale; without it, only those whose process is gone (a live pid may be a concurrent export)."""
    dest = Path(dest)
    removed: list[Path] = []
    if not dest.parent.is_dir():
        return removed
    for p in dest.parent.glob(f".{dest.name}{_TMP}*"):
        try:
            pid = int(p.name.rsplit("-", 1)[-1])
        except ValueError:
            pid = None
        if pid == os.getpid() or not p.is_dir():
            continue
        if holding_lock or (pid is not None and not _alive(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextmanager
def staging(dest: Path, *, holding_lock: bool = False) -> Iterator[Path]:
    """A fresh hidden folder next to ``dest`` to write the export into; removed if anything fails. Staging
    folders a killed run left are removed first (see :func:`clean_stale`)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(dest, holding_lock=holding_lock)
    tmp = dest.parent / f".{dest.name}{_TMP}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ExportError(f"no space left while writing the export next to {dest} ({e.strerror}); nothing "
                              "was published: free some space (or choose another export.dir) and run again") from e
        raise ExportError(f"writing the export next to {dest} failed: {e}; nothing was published") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def _usual_modes(root: Path) -> None:
    """Give every file the mode a newly created file gets (0666 minus the umask): safetensors writes its
    files readable by their owner only, and an export is meant to be read by others (a server, a team)."""
    umask = os.umask(0)
    os.umask(umask)
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            p.chmod(0o666 & ~umask)


def publish(tmp: Path, dest: Path, fingerprint: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the marker into ``tmp`` (last), then swap ``tmp`` into place as ``dest``."""
    tmp, dest = Path(tmp), Path(dest)
    _usual_modes(tmp)
    files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
    info = {"fingerprint": fingerprint, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files,
            **(extra or {})}
    _fsync_tree(tmp)
    marker = tmp / MARKER
    with open(marker, "w") as f:
        f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    check_destination(dest)   # nobody put foreign files there meanwhile
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}{_TMP}old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return info
