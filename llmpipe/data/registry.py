"""Dataset registry: LLaMA-Factory's ``dataset_info.json`` format, the bundled registry, direct paths.

Lookup order for a name: ``<dataset_dir>/dataset_info.json``, then the registry bundled with llmpipe
(``llmpipe.bundled_data``), then the name as a local file/folder path (json, jsonl, csv, parquet,
arrow, txt) whose formatting is sniffed from its columns. Fast and torch-free: pre-flight calls it.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import importlib.resources
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmpipe.data.errors import DataError
from llmpipe.data.sources import EXTENSIONS, file_rows

FORMATS = ("alpaca", "sharegpt", "openai")
DEFAULT_COLUMNS = {
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output"},
    "sharegpt": {"messages": "conversations"},
    "openai": {"messages": "messages"},
}
DEFAULT_TAGS = {
    "sharegpt": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"},
    "openai": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"},
}
COLUMN_KEYS = ("prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
               "audios", "chosen", "rejected", "kto_tag")


@dataclass
class DatasetSpec:
    name: str
    source: str  # absolute local path, or a hub id
    source_kind: str = "file"  # file | hub | cloud
    formatting: str = "alpaca"
    ranking: bool = False
    kto: bool = False  # has a kto_tag column
    columns: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    split: str = "train"
    subset: str | None = None
    folder: str | None = None
    num_samples: int | None = None
    revision: str | None = None
    file_type: str | None = None  # json | csv | parquet | arrow | text (local sources)
    registry: str = ""  # where the entry came from: a dataset_info.json path, "bundled" or "path"

    def to_dict(self) -> dict:
        return asdict(self)


def bundled_dir() -> Path:
    from llmpipe.resources import folder

    return folder("data")


def _read_registry(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read dataset registry {path}: {e}") from None
    if not isinstance(info, dict):
        raise DataError(f"dataset registry {path} must be a JSON object of name -> entry")
    return info


@functools.lru_cache(maxsize=1)
def _bundled_registry() -> dict:
    return _read_registry(bundled_dir() / "dataset_info.json")


def _user_registry(dataset_dir) -> tuple[Path, dict] | None:
    if not dataset_dir or str(dataset_dir).upper() == "ONLINE":
        return None
    p = Path(dataset_dir).expanduser() / "dataset_info.json"
    return (p, _read_registry(p)) if p.is_file() else None


def _file_type(path: Path) -> str:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in EXTENSIONS)
    kinds = {EXTENSIONS.get(p.suffix) for p in files}
    if not files or None in kinds:
        raise DataError(f"dataset path {path}: no supported files (json, jsonl, csv, parquet, arrow, txt)")
    if len(kinds) > 1:
        raise DataError(f"dataset folder {path} mixes file types {sorted(kinds)}; use one type per folder")
    return kinds.pop()


def _spec_from_entry(name: str, entry: dict, base: Path, registry: str) -> DatasetSpec:
    if not isinstance(entry, dict):
        raise DataError(f"dataset {name!r} in {registry}: entry must be an object")
    fmt = entry.get("formatting", "alpaca")
    if fmt not in FORMATS:
        raise DataError(f"dataset {name!r} in {registry}: formatting={fmt!r}; allowed: {', '.join(FORMATS)}")
    cols = dict(DEFAULT_COLUMNS[fmt])
    cols.update({k: v for k, v in (entry.get("columns") or {}).items() if v})
    unknown = sorted(set(cols) - set(COLUMN_KEYS))
    if unknown:
        raise DataError(f"dataset {name!r} in {registry}: unknown column keys {unknown}; allowed: {list(COLUMN_KEYS)}")
    tags = dict(DEFAULT_TAGS.get(fmt, {}))
    tags.update(entry.get("tags") or {})
    spec = DatasetSpec(name=name, source="", formatting=fmt, ranking=bool(entry.get("ranking", False)),
                       kto="kto_tag" in cols, columns=cols, tags=tags, split=entry.get("split", "train"),
                       subset=entry.get("subset"), folder=entry.get("folder"), num_samples=entry.get("num_samples"),
                       revision=entry.get("revision"), registry=registry)
    if entry.get("hf_hub_url"):
        spec.source_kind, spec.source = "hub", entry["hf_hub_url"]
    elif entry.get("ms_hub_url") or entry.get("om_hub_url"):  # recognised, refused when read (sources.py)
        spec.source_kind = "modelscope" if entry.get("ms_hub_url") else "openmind"
        spec.source = entry.get("ms_hub_url") or entry["om_hub_url"]
    elif entry.get("script_url") or entry.get("file_name"):
        p = Path(entry.get("script_url") or entry["file_name"]).expanduser()
        p = p if p.is_absolute() else base / p
        spec.source = str(p.resolve())
        if not p.exists():
            raise DataError(f"dataset {name!r} ({registry}): file {p} does not exist")
        spec.file_type = _file_type(p)
    elif entry.get("cloud_file_name"):
        spec.source_kind, spec.source = "cloud", entry["cloud_file_name"]
    else:
        raise DataError(f"dataset {name!r} in {registry}: needs one of file_name, hf_hub_url, script_url, cloud_file_name")
    return spec


def _first_record(path: Path, ftype: str) -> dict:
    f = path if path.is_file() else next(p for p in sorted(path.rglob("*")) if p.suffix in EXTENSIONS)
    if ftype == "text":
        return {"text": ""}
    if ftype == "csv":
        with open(f, newline="", encoding="utf-8-sig", errors="replace") as fh:
            return dict.fromkeys(next(csv.reader(fh), []), "")
    if ftype in ("parquet", "arrow"):
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(f).names if ftype == "parquet" else _arrow_names(f)
        except (OSError, ValueError) as e:  # a corrupt file: ArrowInvalid is a ValueError
            raise DataError(f"dataset path {path}: cannot read {ftype} file {f} ({e})") from None
        return dict.fromkeys(names, "")
    # the columns of the first readable row among the first 1000; a file that cannot be read at all is the
    # same DataError the load stage would raise, and bad rows are reported by the load stage
    from itertools import islice

    return next((r for r in islice(file_rows(f, "json", str(path)), 1000) if isinstance(r, dict)), {})


def first_columns(spec: DatasetSpec) -> set[str] | None:
    """The column names of a local dataset's first readable record (None for a hub or cloud source, or a
    source that cannot be read here: the load stage reports those)."""
    if spec.source_kind != "file" or not spec.source:
        return None
    path = Path(spec.source)
    try:
        return set(_first_record(path, spec.file_type or _file_type(path)))
    except (DataError, OSError, ValueError, StopIteration):
        return None


def _arrow_names(f: Path) -> list[str]:
    import pyarrow as pa

    with pa.memory_map(str(f)) as src:
        try:
            return pa.ipc.open_stream(src).schema.names
        except pa.ArrowInvalid:
            return pa.ipc.open_file(src).schema.names


def sniff_entry(path: Path) -> dict:
    """A dataset_info.json entry for a local file or folder, from its columns."""
    ftype = _file_type(path)
    row = _first_record(path, ftype)
    keys = set(row)
    opt = {k: k for k in ("system", "tools", "history", "images", "videos", "audios") if k in keys}
    pref = {"chosen": "chosen", "rejected": "rejected"} if {"chosen", "rejected"} <= keys else {}
    kto = {"kto_tag": "kto_tag"} if "kto_tag" in keys else {}
    for col in ("conversations", "messages"):
        if col in keys:
            msgs = row.get(col) or [{}]
            first = msgs[0] if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) else {}
            fmt = "sharegpt" if "from" in first or (col == "conversations" and "role" not in first) else "openai"
            entry = {"formatting": fmt, "columns": {"messages": col, **opt, **pref, **kto}}
            if fmt == "openai" and col == "conversations" or fmt == "sharegpt" and col == "messages":
                entry["tags"] = dict(DEFAULT_TAGS[fmt])
            return {**entry, "ranking": bool(pref)}
    if "instruction" in keys or "prompt" in keys:
        p = "instruction" if "instruction" in keys else "prompt"
        resp = next((c for c in ("output", "response", "completion") if c in keys), None)
        cols = {"prompt": p, **({"query": "input"} if "input" in keys else {}),
                **({"response": resp} if resp else {}), **opt, **pref, **kto}
        return {"columns": cols, "ranking": bool(pref)}
    if "text" in keys:
        return {"columns": {"prompt": "text"}}
    raise DataError(f"dataset path {path}: cannot tell its format from columns {sorted(keys)}; register it in "
                    "dataset_info.json with explicit columns")


def find_dataset(name: str, dataset_dir: str | Path | None = "data") -> DatasetSpec | None:
    """The spec for dataset ``name``, or None when no registry knows it and it is not a path."""
    name = name.strip()
    if str(dataset_dir or "").upper().startswith("REMOTE:"):
        raise DataError(f"data.dataset_dir={dataset_dir}: registries on the hub are not fetched; download that "
                        "repository's dataset_info.json (and data) and set data.dataset_dir to the local folder")
    user = _user_registry(dataset_dir)
    if user and name in user[1]:
        return _spec_from_entry(name, user[1][name], user[0].parent, str(user[0]))
    if dataset_dir and str(dataset_dir).upper() == "ONLINE":
        return DatasetSpec(name=name, source=name, source_kind="hub", registry="ONLINE")
    bundled = _bundled_registry()
    if name in bundled:
        return _spec_from_entry(name, bundled[name], bundled_dir(), "bundled")
    candidates = [Path(name).expanduser()]
    if dataset_dir:
        candidates.append(Path(dataset_dir).expanduser() / name)
    for p in candidates:
        if p.exists() and (p.is_dir() or p.suffix in EXTENSIONS):
            return _spec_from_entry(name, {"file_name": str(p.resolve()), **sniff_entry(p)}, p.parent, "path")
    return None


def known_names(dataset_dir: str | Path | None = "data") -> list[str]:
    user = _user_registry(dataset_dir)
    return sorted(set(_bundled_registry()) | set(user[1] if user else ()))


def _local_files(spec: DatasetSpec) -> list[Path]:
    p = Path(spec.source)
    return [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())


def data_identity(spec: DatasetSpec) -> str:
    """``sha256:<hex>`` over the parsing-relevant spec fields and, for local sources, the file bytes
    (for a hub source: its id and revision)."""
    h = hashlib.sha256()
    head = {k: getattr(spec, k) for k in ("formatting", "ranking", "kto", "columns", "tags", "split", "subset",
                                          "folder", "num_samples", "source_kind")}
    h.update(json.dumps(head, sort_keys=True).encode())
    if spec.source_kind == "file":
        root = Path(spec.source)
        for f in _local_files(spec):
            rel = f.name if f == root else f.relative_to(root).as_posix()
            h.update(f"\0{rel}\0{f.stat().st_size}\0".encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    else:
        h.update(f"{spec.source_kind}:{spec.source}@{spec.revision or 'main'}".encode())
    return "sha256:" + h.hexdigest()
