"""The content-addressed store: one directory per stage fingerprint under ``run.cache_root``.

Layout::

    <root>/<kind>/<fp>/            a published entry: complete only when it holds COMPLETE
    <root>/<kind>/<fp>.work/       the stage's scratch space while it runs (checkpoints survive a crash)
    <root>/locks/<kind>-<fp>.lock  per-fingerprint lock: two jobs never compute the same stage at once
                                  (and a <lock>.waiting-<host>-<pid> marker per job waiting for it)

Publishing is atomic: the stage writes into ``<fp>.work/out``; that folder is renamed to ``<fp>`` and the
COMPLETE marker is written last, so a reader never sees a half-written entry marked complete.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmpipe.errors import UserError
from llmpipe.processes import file_lock, waiting

MARKER = "COMPLETE"


class StoreError(UserError):
    pass


@dataclass(frozen=True)
class Entry:
    root: Path
    kind: str
    fp: str

    @property
    def path(self) -> Path:
        return self.root / self.kind / self.fp

    @property
    def work(self) -> Path:
        return self.root / self.kind / f"{self.fp}.work"

    @property
    def staging(self) -> Path:
        return self.work / "out"

    @property
    def lock_path(self) -> Path:
        return self.root / "locks" / f"{self.kind}-{self.fp}.lock"

    def complete(self) -> bool:
        return (self.path / MARKER).is_file()

    def info(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "stage.json").read_text())
        except (OSError, ValueError):
            return {}


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()

    def check_writable(self) -> str | None:
        """None when the store can be written, else a message."""
        try:
            (self.root / "locks").mkdir(parents=True, exist_ok=True)
            probe = self.root / "locks" / f".probe-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            return f"cannot write to the stage store {self.root}: {e.strerror or e}"
        return None

    def entry(self, kind: str, fp: str) -> Entry:
        return Entry(self.root, kind, fp)

    def locked(self, entry: Entry, on_wait=None):
        """The entry's lock (``on_wait`` is called once when another job holds it)."""
        return file_lock(entry.lock_path, on_wait)

    def waiting(self, entry: Entry) -> int:
        """How many jobs of this machine wait for ``entry`` while this one computes it (they sit idle)."""
        return waiting(entry.lock_path)

    def prepare(self, entry: Entry) -> None:
        """Clear a stale published folder without marker and a stale staging folder (keeps checkpoints)."""
        if entry.path.exists() and not entry.complete():
            shutil.rmtree(entry.path)
        if entry.staging.exists():
            shutil.rmtree(entry.staging)
        entry.staging.mkdir(parents=True)

    def publish(self, entry: Entry, info: dict[str, Any]) -> None:
        """Move the staging folder into place; the COMPLETE marker goes last."""
        stage_json = entry.staging / "stage.json"
        stage_json.write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
        _fsync_tree(entry.staging)
        entry.path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(entry.staging, entry.path)
        marker = entry.path / MARKER
        with open(marker, "w") as f:
            f.write(f"{time.time()}\n")
            f.flush()
            os.fsync(f.fileno())
        shutil.rmtree(entry.work, ignore_errors=True)

    def invalidate(self, entry: Entry) -> None:
        """Forget a published entry (run.force): the marker goes first."""
        if entry.path.exists():
            try:
                (entry.path / MARKER).unlink()
            except FileNotFoundError:
                pass
            shutil.rmtree(entry.path)


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            try:
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
            except OSError:
                pass
