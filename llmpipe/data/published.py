"""How tokenized data is laid out on disk: in a load stage's output folder and in ``data.tokenized_path``.

Layout: ``train/`` and ``eval/`` (``datasets.save_to_disk``), ``eval_each/<name>/`` with
``data.eval_on_each_dataset``, or ``stream.json`` instead of ``train/`` with ``data.streaming`` (the train
stage then streams the raw data itself, see llmpipe.data.streaming). ``open_published(folder)`` returns
(train, eval) for the train stage, whichever of the two it is.

``data.tokenized_path`` holds the same layout plus ``llmpipe-tokenized.json``, which records the load
stage fingerprint it was made with (config read by the load stage, tokenizer/model and data identities,
code version). A later run reuses it only when the fingerprint matches, and refuses otherwise
(``data.overwrite_cache=true`` rebuilds it) — stale tokenized data is never used silently.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from llmpipe.data.errors import DataError

MANIFEST = "llmpipe-tokenized.json"


def save_bundle(bundle, out: Path) -> dict:
    """Write train/eval(/eval_each) of ``bundle`` under ``out``; the row counts."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train_rows": len(bundle.train)}
    bundle.train.save_to_disk(str(out / "train"))
    if bundle.eval is not None:
        bundle.eval.save_to_disk(str(out / "eval"))
        counts["eval_rows"] = len(bundle.eval)
    for name, ds in (bundle.eval_each or {}).items():
        ds.save_to_disk(str(out / "eval_each" / name))
    return counts


def load_bundle(folder: Path, report):
    from datasets import load_from_disk

    from llmpipe.data.loader import Bundle

    ev = load_from_disk(str(folder / "eval")) if (folder / "eval").exists() else None
    return Bundle(load_from_disk(str(folder / "train")), ev, report, open_eval_each(folder))


def open_eval_each(folder: Path) -> dict | None:
    from datasets import load_from_disk

    root = folder / "eval_each"
    if not root.is_dir():
        return None
    return {p.name: load_from_disk(str(p)) for p in sorted(root.iterdir()) if p.is_dir()}


SOURCE_FILE = "source.json"   # {"model": <the base model this load stage resolved>}


def write_source(load_dir: Path, source: str) -> None:
    (Path(load_dir) / SOURCE_FILE).write_text(json.dumps({"model": source}, indent=2))


def read_source(load_dir: Path) -> str:
    """The base model (folder or hub id) a load stage resolved."""
    return json.loads((Path(load_dir) / SOURCE_FILE).read_text())["model"]


def open_published(folder: Path):
    """(train, eval) published by a load stage: datasets.Dataset, or an IterableDataset for a stream."""
    from datasets import load_from_disk

    folder = Path(folder)
    ev = load_from_disk(str(folder / "eval")) if (folder / "eval").exists() else None
    if (folder / "stream.json").exists():
        from llmpipe.data.streaming import open_stream

        return open_stream(folder), ev
    return load_from_disk(str(folder / "train")), ev


def tokenized_state(path: str, key: str, overwrite: bool) -> str:
    """What to do with ``data.tokenized_path``: "load" (it holds this very data), or "write"."""
    p = Path(path).expanduser()
    if not p.exists() or (p.is_dir() and not any(p.iterdir())):
        return "write"
    manifest = p / MANIFEST
    if not manifest.is_file():
        raise DataError(f"data.tokenized_path={path} exists and was not written by llmpipe (no {MANIFEST}); "
                        "llmpipe neither reads nor overwrites it: choose an empty or new folder")
    made = json.loads(manifest.read_text()).get("fingerprint")
    if overwrite:
        return "write"
    if made == key:
        return "load"
    raise DataError(f"data.tokenized_path={path} holds data tokenized with other settings, data or tokenizer "
                    f"(load fingerprint {str(made)[:12]}, this run {key[:12]}); set data.overwrite_cache=true to "
                    "rebuild it, or choose another folder")


def write_tokenized(bundle, path: str, key: str, report: dict) -> None:
    p = Path(path).expanduser()
    if p.exists():
        shutil.rmtree(p)  # only reached for an empty folder or one with our manifest
    tmp = p.with_name(p.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_bundle(bundle, tmp)
    (tmp / "data_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    (tmp / MANIFEST).write_text(json.dumps({"fingerprint": key, "identities": report.get("identities", {})},
                                           indent=2))
    tmp.rename(p)


def read_tokenized(path: str):
    from llmpipe.data.loader import DataReport

    p = Path(path).expanduser()
    report = json.loads((p / "data_report.json").read_text())
    return load_bundle(p, DataReport(identities=report.get("identities", {}), rows=report.get("rows", {}),
                                     packing=report.get("packing", {}))), report
