"""What the page knows about jobs: found under the given folders (a folder with Hydra's ``.hydra/`` or an
``llmpipe.lock.yaml``), read through the lock file (pipeline.lockfile), the stage graph rebuilt from the
job's own resolved config (pipeline.dag), and the train stage's log history from the store. No torch."""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmpipe.pipeline.lockfile import LockFile
from llmpipe.pipeline.lockfile import read as read_lock

SKIP_DIRS = {".hydra", "trainer_output", "checkpoints", "__pycache__", ".git", "model", "adapter"}
MAX_DEPTH = 6


@dataclass
class Job:
    key: str                  # "<root index>/<path inside the root>": the page's address of the job
    path: Path
    lock: dict | None
    mtime: float

    @property
    def recipe(self) -> str:
        name = ((self.lock or {}).get("config") or {}).get("run", {}).get("name")
        if name:
            return str(name)
        overrides = hydra_overrides(self.path)
        chosen = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("recipe=")]
        return chosen[0] if chosen else "adhoc"

    @property
    def status(self) -> str:
        if self.lock is None:
            return "no lock file"
        return str(self.lock.get("status") or "unknown")

    @property
    def created(self) -> str:
        if self.lock and self.lock.get("created"):
            return str(self.lock["created"]).replace("T", " ")
        return _dt.datetime.fromtimestamp(self.mtime).isoformat(sep=" ", timespec="seconds")

    @property
    def objective(self) -> dict | None:
        return (self.lock or {}).get("objective")

    @property
    def overrides(self) -> list[str]:
        return hydra_overrides(self.path)

    def stage_count(self, status: str) -> int:
        return sum(1 for s in ((self.lock or {}).get("stages") or {}).values() if s.get("status") == status)


@dataclass
class Sweep:
    key: str
    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    mtime: float = 0.0


def hydra_overrides(job_dir: Path) -> list[str]:
    import yaml

    path = Path(job_dir) / ".hydra" / "overrides.yaml"
    try:
        return [str(o) for o in (yaml.safe_load(path.read_text(encoding="utf-8")) or [])]
    except (OSError, ValueError, yaml.YAMLError):
        return []


def _walk(root: Path):
    """Folders under ``root`` (itself included), not descending into a job's own outputs."""
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        yield folder
        if depth >= MAX_DEPTH:
            continue
        try:
            children = [e for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for e in children:
            if e.name not in SKIP_DIRS and not e.name.startswith("."):
                stack.append((Path(e.path), depth + 1))


def _load_lock(path: Path) -> dict | None:
    try:
        data = read_lock(path)
        return data if isinstance(data, dict) else None
    except Exception:   # noqa: BLE001 - half-written by a job on another machine, or not ours
        return None


class Catalog:
    """The jobs and sweeps under the folders the page was given, read afresh on every request (cheap: one
    stat per folder, and a lock file is parsed again only when it changed)."""

    def __init__(self, roots: list[Path]):
        self.roots = [Path(r) for r in roots]
        self._locks: dict[Path, tuple[float, dict | None]] = {}

    def _lock_of(self, folder: Path) -> tuple[dict | None, float]:
        path = folder / LockFile.NAME
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None, (folder / ".hydra").stat().st_mtime
        cached = self._locks.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, _load_lock(path))
            self._locks[path] = cached
        return cached[1], mtime

    def _key(self, i: int, folder: Path) -> str:
        rel = folder.relative_to(self.roots[i]).as_posix()
        return f"{i}/{rel}" if rel != "." else f"{i}"

    def _folders(self, wanted) -> list[tuple[str, Path]]:
        """(page address, folder) of every folder under the roots for which ``wanted(folder)`` holds."""
        return [(self._key(i, folder), folder) for i, root in enumerate(self.roots) if root.is_dir()
                for folder in _walk(root) if wanted(folder)]

    def jobs(self) -> list[Job]:
        found = []
        for key, folder in self._folders(lambda f: (f / LockFile.NAME).is_file() or (f / ".hydra" / "config.yaml").is_file()):
            lock, mtime = self._lock_of(folder)
            found.append(Job(key, folder, lock, mtime))
        return sorted(found, key=lambda j: (j.created, j.mtime), reverse=True)

    def sweeps(self) -> list[Sweep]:
        from llmpipe.pipeline.sweep import RESULTS, read_rows

        found = [Sweep(key, folder, read_rows(folder), (folder / RESULTS).stat().st_mtime)
                 for key, folder in self._folders(lambda f: (f / RESULTS).is_file())]
        return sorted(found, key=lambda s: s.mtime, reverse=True)

    def resolve(self, key: str) -> Path | None:
        """The folder of a page address, only inside one of the roots (no ``..`` escapes)."""
        head, _, rel = key.partition("/")
        if not head.isdigit() or int(head) >= len(self.roots):
            return None
        root = self.roots[int(head)].resolve()
        path = (root / rel).resolve() if rel else root
        if path != root and root not in path.parents:
            return None
        return path if path.is_dir() else None

    def job(self, key: str) -> Job | None:
        path = self.resolve(key)
        if path is None or not ((path / LockFile.NAME).is_file() or (path / ".hydra").is_dir()):
            return None
        lock, mtime = self._lock_of(path)
        return Job(key, path, lock, mtime)

    def sweep(self, key: str) -> Sweep | None:
        from llmpipe.pipeline.sweep import RESULTS, read_rows

        path = self.resolve(key)
        if path is None or not (path / RESULTS).is_file():
            return None
        return Sweep(key, path, read_rows(path), (path / RESULTS).stat().st_mtime)

    def key_of(self, folder: Path) -> str | None:
        folder = Path(folder).resolve()
        for i, root in enumerate(self.roots):
            root = root.resolve()
            if folder == root or root in folder.parents:
                rel = folder.relative_to(root).as_posix()
                return f"{i}/{rel}" if rel != "." else f"{i}"
        return None
