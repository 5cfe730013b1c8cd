"""Identities of a run's external inputs (models and datasets), for fingerprints and the lock file.

Local files are identified by their content (sha256), memoised on (path, size, mtime) so that a large
model is hashed once; hub models by name and resolved revision; built-in models by their builder.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


_MODEL_FILES = (".json", ".safetensors", ".bin", ".model", ".txt", ".jinja", ".py", ".tiktoken")


def _sha_file(path: Path, memo: dict) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    memo[key] = h.hexdigest()
    return memo[key]


class Identities:
    """Content hashes with an on-disk memo inside the store."""

    def __init__(self, cache_root: Path):
        self.memo_path = Path(cache_root) / "identity-memo.json"
        try:
            self.memo = json.loads(self.memo_path.read_text())
        except (OSError, ValueError):
            self.memo = {}
        self.dirty = False

    def files(self, root: Path, suffixes: tuple[str, ...] | None = None) -> str:
        root = Path(root)
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        h = hashlib.sha256()
        for p in paths:
            if suffixes and p.suffix not in suffixes:
                continue
            if any(part.startswith(".") for part in p.relative_to(root if root.is_dir() else root.parent).parts):
                continue
            before = len(self.memo)
            digest = _sha_file(p, self.memo)
            self.dirty |= len(self.memo) != before
            rel = p.name if root.is_file() else str(p.relative_to(root))
            h.update(f"{rel}\0{digest}\n".encode())
        return h.hexdigest()

    def model(self, name: str, revision: str | None) -> str:
        if name.startswith("builtin:"):
            return f"{name}@{builtin_identity(name)}"
        path = Path(name).expanduser()
        if path.exists():
            return f"local:{self.files(path, _MODEL_FILES)}"
        return f"hub:{name}@{resolve_hub_revision(name, revision or 'main')}"

    def save(self) -> None:
        if not self.dirty:
            return
        from filelock import FileLock   # here, not at import: a rejected config never saves (filelock: 20 ms)

        self.memo_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.memo_path) + ".lock"):
            try:
                merged = json.loads(self.memo_path.read_text())
            except (OSError, ValueError):
                merged = {}
            merged.update(self.memo)
            tmp = self.memo_path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(merged))
            os.replace(tmp, self.memo_path)


def builtin_identity(name: str) -> str:
    """The built-in model is defined by its builder code and the bundled corpus it trains the tokenizer on."""
    import llmpipe
    from llmpipe.resources import folder

    h = hashlib.sha256(name.encode())
    h.update((Path(llmpipe.__file__).parent / "models" / "tiny.py").read_bytes())
    corpus = folder("data") / "corpus"
    if corpus.is_dir():
        for entry in sorted(corpus.iterdir(), key=lambda e: e.name):
            if entry.is_file():
                h.update(entry.name.encode() + b"\0" + entry.read_bytes())
    return h.hexdigest()[:16]


def resolve_hub_revision(name: str, revision: str) -> str:
    """A branch name is resolved to the commit cached locally when possible (offline-safe)."""
    if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    cache = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    ref = cache / ("models--" + name.replace("/", "--")) / "refs" / revision
    try:
        return ref.read_text().strip()
    except OSError:
        return revision
