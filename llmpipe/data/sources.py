"""Raw rows of a dataset: local files (json, jsonl, csv, parquet, arrow, txt, or a folder of one type) and
Hugging Face Hub datasets (only where the hub is reachable; a clear DataError otherwise).

A row that cannot be parsed (a broken JSON line, a CSV line with the wrong number of fields) becomes a
``BadRow`` placeholder, so the converters count and report it with its row number instead of dropping it.
A file that cannot be parsed at all (a broken JSON array) is a DataError naming the dataset and the place.
``iter_rows`` yields rows one at a time for streaming; ``read_rows`` returns them all.
"""
from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from llmpipe.config.environment import offline
from llmpipe.data.errors import DataError
from llmpipe.data.report import BadRow

# data file suffix -> file type (dataset_info.json's file types; a folder holds files of one type)
EXTENSIONS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow",
              ".txt": "text"}


def _read_text(path: Path, name: str) -> str:
    """The file as text; bytes that are not UTF-8 are a DataError naming the dataset, file and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"dataset {name!r}: {path} is not UTF-8 text (line {line}, byte {e.start}: {e.reason}); "
                        "nothing of it can be read") from None


def _jsonl_lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """(line number, text) per line; text None for a line that is not UTF-8 (a bad row, not a bad file)."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                yield lineno, None


def _first_char(path: Path) -> str:
    with open(path, "rb") as fh:
        while chunk := fh.read(4096):
            rest = chunk.lstrip(b" \t\r\n\xef\xbb\xbf")  # whitespace and the UTF-8 BOM
            if rest:
                return chr(rest[0])
    return ""


def _json_rows(path: Path, name: str) -> Iterator:
    if path.suffix != ".jsonl" and _first_char(path) == "[":
        text = _read_text(path, name)
        try:
            data = json.loads(text)
        except ValueError as e:
            raise DataError(f"dataset {name!r}: {path} is not valid JSON ({e}); nothing of it can be read") from None
        if not isinstance(data, list):
            raise DataError(f"dataset {name!r}: {path} must hold a JSON list of rows (or JSON lines)")
        yield from data
        return
    for lineno, line in _jsonl_lines(path):
        if line is None:
            yield BadRow(f"line {lineno} is not UTF-8 text")
            continue
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as e:
            yield BadRow(f"line {lineno} is not valid JSON ({e.msg} at column {e.colno})")


def _lenient_text(path: Path) -> str:
    """The file as text, bytes that are not UTF-8 kept as lone surrogates (``_undecodable`` finds them), so
    a line-oriented file reports such a line as a bad row instead of failing as a whole."""
    return path.read_bytes().decode("utf-8-sig", errors="surrogateescape")


def _undecodable(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _csv_rows(path: Path, name: str) -> Iterator:
    import io

    with io.StringIO(_lenient_text(path), newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            return
        if _undecodable("".join(header)):
            raise DataError(f"dataset {name!r}: the header line of {path} is not UTF-8 text")
        while True:
            start = reader.line_num + 1
            fields = next(reader, None)
            if fields is None:
                return
            if not any(f.strip() for f in fields):
                continue
            end = reader.line_num
            where = f"csv line {end}" if end == start else f"csv lines {start}-{end}"
            if _undecodable("".join(fields)):
                yield BadRow(f"{where} is not UTF-8 text")
            elif len(fields) != len(header):
                hint = " (a quote that is not closed?)" if end > start else ""
                verb = "has" if end == start else "(one record) have"
                yield BadRow(f"{where} {verb} {len(fields)} fields, the header has {len(header)}{hint}")
            else:
                yield dict(zip(header, fields))


def _arrow_rows(path: Path, ftype: str) -> Iterator:
    import pyarrow as pa

    if ftype == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
        return
    with pa.memory_map(str(path)) as src:
        try:
            table = pa.ipc.open_stream(src).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(src).read_all()
    yield from table.to_pylist()


def file_rows(path: Path, ftype: str, name: str) -> Iterator:
    if ftype == "json":
        yield from _json_rows(path, name)
    elif ftype == "text":
        for ln in _lenient_text(path).splitlines():
            if ln.strip():
                yield BadRow("line is not UTF-8 text") if _undecodable(ln) else {"text": ln}
    elif ftype == "csv":
        yield from _csv_rows(path, name)
    elif ftype in ("parquet", "arrow"):
        try:
            yield from _arrow_rows(path, ftype)
        except (OSError, ValueError) as e:  # pyarrow's errors for corrupt files: OSError, ArrowInvalid (ValueError)
            raise DataError(f"dataset {name!r}: cannot read {ftype} file {path} ({e})") from None
    else:
        raise DataError(f"dataset {name!r}: unsupported file type {ftype!r} ({path})")


def local_files(spec) -> list[Path]:
    root = Path(spec.source)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in EXTENSIONS)


def _hub_endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)


def check_hub_reachable(spec) -> None:
    """DataError unless the hub holding ``spec`` can be reached from here."""
    if spec.source_kind != "hub":
        where = {"modelscope": "ModelScope", "openmind": "Modelers (openmind)"}.get(spec.source_kind, spec.source_kind)
        raise DataError(f"dataset {spec.name!r}: {where} sources ({spec.source}) are not supported; download the "
                        "data and register the local file with file_name")
    var = offline(datasets=True)
    if var:
        raise DataError(f"dataset {spec.name!r} is the hub dataset {spec.source!r}, but this run is offline "
                        f"({var} is set). Download it where there is network (e.g. datasets.load_dataset(...)"
                        ".to_json('x.jsonl')) and register the local file with file_name in dataset_info.json")
    host, port = _hub_endpoint()
    try:
        socket.create_connection((host, port), timeout=float(os.environ.get("LLMPIPE_HUB_TIMEOUT", "5"))).close()
    except OSError as e:
        raise DataError(f"dataset {spec.name!r} is the hub dataset {spec.source!r}, but the hub ({host}:{port}) "
                        f"cannot be reached ({e}). Use a local copy (file_name in dataset_info.json), or set "
                        "HF_ENDPOINT to a reachable mirror") from None


def _hub_dataset(spec, streaming: bool):
    check_hub_reachable(spec)
    import datasets

    try:
        return datasets.load_dataset(spec.source, name=spec.subset, split=spec.split, revision=spec.revision,
                                     data_dir=spec.folder, streaming=streaming)
    except Exception as e:  # noqa: BLE001  (datasets raises many kinds; all mean "cannot load it")
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"dataset {spec.name!r}: cannot load hub dataset {spec.source!r} "
                        f"(split={spec.split!r}, subset={spec.subset!r}): {first}") from None


def iter_rows(spec) -> Iterator:
    """The raw rows of ``spec`` one by one (BadRow placeholders where a row could not be parsed)."""
    if spec.source_kind != "file":
        yield from _hub_dataset(spec, streaming=True)
        return
    files = local_files(spec)
    if not files:
        raise DataError(f"dataset {spec.name!r}: no data files in {spec.source}")
    for f in files:
        yield from file_rows(f, spec.file_type or "json", spec.name)


def read_rows(spec) -> list:
    """All raw rows of ``spec``."""
    if spec.source_kind != "file":
        return _hub_dataset(spec, streaming=False).to_list()
    return list(iter_rows(spec))
