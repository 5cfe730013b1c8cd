"""The export folder (``export.dir``) is written atomically: everything goes into a hidden sibling folder,
the marker file (:data:`MARKER`, with the stage fingerprint and the size of every file) is written last, and
the folder is then swapped into place. A failed or killed export (a full disk included) leaves no folder
that looks complete, and a previous export stays as it was. A folder holding files llmpipe did not write is
never touched. Torch-free: the "already exported" decision is taken before any model library is imported.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from llmpipe.config.families.export import EXPORT_MARKER
from llmpipe.exporting.errors import ExportError

MARKER = EXPORT_MARKER
_TMP = ".llmpipe-tmp-"


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


def _clean_stale(dest: Path) -> None:
    """Remove hidden staging folders of exports to ``dest`` whose process is gone (a killed run)."""
    if not dest.parent.is_dir():
        return
    for p in dest.parent.glob(f".{dest.name}{_TMP}*"):
        try:
            pid = int(p.name.rsplit("-", 1)[-1])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def staging(dest: Path) -> Iterator[Path]:
    """A fresh hidden folder next to ``dest`` to write the export into; removed if anything fails."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(dest)
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
