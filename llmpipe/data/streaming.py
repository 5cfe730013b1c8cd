"""Streaming (``data.streaming=true``, pt and sft): the training data is read, converted, tokenized and
packed while training runs, never stored whole.

How it fits the store: the load stage does not publish a tokenized train/ folder but ``stream.json`` —
the data options, the dataset specs and their identities (sha256 of the files, or hub id + revision).
The load stage's fingerprint covers those identities, so the train stage's fingerprint does too; when the
train stage opens the stream it checks the identities again and refuses data that changed in between.
The load stage also reads the first ``PREVIEW`` rows of each dataset (a dataset with no usable row among
them is an error before training starts) and materialises the evaluation data: ``data.eval_dataset``
(loaded as usual) or the first ``data.val_size`` examples of the stream, which training then skips.

Bad rows met while streaming are logged as they come (the first five per dataset with row number and
reason, then a count every 1000); a dataset that yields no usable row at all is a DataError naming it.
Shuffling uses a buffer of ``data.buffer_size`` examples; ``train.max_steps`` bounds the run.

Streaming is text only: a dataset with images, videos or audios columns is refused (:data:`NO_MEDIA` says why;
pre-flight's rule data-streaming-media says it before anything runs).
"""
from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

from llmpipe.data.errors import DataError
from llmpipe.data.options import DataOptions
from llmpipe.data.registry import DatasetSpec, data_identity
from llmpipe.data.report import MAX_EXAMPLES, RowReport

log = logging.getLogger("llmpipe.data")
PREVIEW = 200
MEDIA_COLUMNS = ("images", "videos", "audios")
NO_MEDIA = ("data.streaming tokenizes text only: a streamed row carries input_ids and labels and nothing else, so "
            "its <image>/<video>/<audio> placeholders would not become the model's media tokens and no pixel values "
            "or audio features would reach the model; set data.streaming=false (the load stage then tokenizes the "
            "media rows with the model's processor)")


def media_columns(spec: DatasetSpec) -> list[str]:
    """The media columns (images, videos, audios) a dataset is registered with."""
    return [c for c in MEDIA_COLUMNS if spec is not None and spec.columns.get(c)]


def refuse_media(spec: DatasetSpec) -> None:
    """A DataError when ``spec`` has media columns: a stream cannot carry them (:data:`NO_MEDIA`)."""
    cols = media_columns(spec)
    if cols:
        raise DataError(f"dataset {spec.name!r} is registered with media ({', '.join(cols)}), and {NO_MEDIA}")


def _features(*extra: str):
    import datasets

    ints = datasets.List(datasets.Value("int64"))
    return datasets.Features({k: ints for k in ("input_ids", "labels", *extra)})


def tokenized_rows(spec: DatasetSpec, opts: DataOptions, tokenizer, proc: dict, limit: int | None = None,
                   report: RowReport | None = None):
    """Tokenized rows of one dataset, read lazily; bad rows counted in ``report`` and logged."""
    from llmpipe.data.formats import _Bad, convert_row
    from llmpipe.data.processors import tokenize_batch
    from llmpipe.data.sources import iter_rows

    refuse_media(spec)
    rep = report if report is not None else RowReport(spec.name, split="stream")

    def bad(i, reason):
        rep.bad(i, reason)
        if rep.dropped <= MAX_EXAMPLES:
            log.warning("dataset %r: row %d dropped: %s", spec.name, i, reason)
        elif rep.dropped % 1000 == 0:
            log.warning("dataset %r: %d rows dropped so far\n%s", spec.name, rep.dropped, rep.summary())

    rows = iter_rows(spec)
    rows = itertools.islice(rows, limit) if limit else rows
    batch_size = max(1, opts.preprocessing_batch_size)
    while True:
        chunk = list(itertools.islice(enumerate(rows, start=rep.total), batch_size))
        if not chunk:
            break
        examples = []
        for i, row in chunk:
            rep.total += 1
            try:
                examples.append(convert_row(row, spec, opts.kind, i, opts.media_root))
            except _Bad as e:
                bad(i, str(e))
        if not examples:
            continue
        cols = ("messages", "system", "tools", "_row")
        out = tokenize_batch({k: [ex.get(k) for ex in examples] for k in cols}, tokenizer=tokenizer,
                             kind=opts.kind, **proc)
        for ids, labels, r, reason in zip(out["input_ids"], out["labels"], out["_row"], out["_bad"]):
            if reason:
                bad(r, reason)
            else:
                rep.kept += 1
                yield {"input_ids": ids, "labels": labels}
    if limit is None and rep.kept == 0:
        raise DataError(f"dataset {spec.name!r} has no usable rows for {opts.kind}:\n{rep.summary()}")


def _gen(spec: dict, opts: dict, tokenizer_dir: str, proc: dict):
    from transformers import AutoTokenizer

    from llmpipe.data.loader import prepare_tokenizer

    options = DataOptions.from_dict(opts)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    prepare_tokenizer(tokenizer, options)
    yield from tokenized_rows(DatasetSpec(**spec), options, tokenizer, proc)


def build_stream(specs: list[DatasetSpec], opts: DataOptions, tokenizer_dir: str, proc: dict):
    """The mixed, not yet packed, stream of tokenized examples (deterministic order)."""
    import datasets

    from llmpipe.data.loader import mix

    parts = [datasets.IterableDataset.from_generator(
        _gen, features=_features(),
        gen_kwargs={"spec": s.to_dict(), "opts": opts.to_dict(), "tokenizer_dir": tokenizer_dir, "proc": proc})
        for s in specs]
    return mix(parts, opts)


def _val_count(opts: DataOptions) -> int:
    if not opts.val_size:
        return 0
    if opts.val_size < 1 or opts.val_size != int(opts.val_size):
        raise DataError(f"data.val_size={opts.val_size}: with data.streaming it must be a whole number of examples")
    return int(opts.val_size)


def prepare_stream(opts: DataOptions, tokenizer, tokenizer_dir: Path):
    """Load stage side: (stream spec, eval dataset or None, DataReport). ``tokenizer`` is already saved
    in ``tokenizer_dir`` (the stream re-opens it there)."""
    import datasets

    from llmpipe.data.loader import (
        DataReport,
        concat,
        load_parts,
        prepare_tokenizer,
        resolve_spec,
        shape,
    )

    if opts.kind not in ("pt", "sft"):
        raise DataError(f"data.streaming supports train.stage pt and sft (this run is {opts.stage})")
    for name in (*opts.dataset, *(opts.eval_dataset or ())):   # before any row is read
        refuse_media(resolve_spec(name, opts))
    proc = prepare_tokenizer(tokenizer, opts)
    report, specs = DataReport(), []
    for name in opts.dataset:
        spec = resolve_spec(name, opts)
        rep = RowReport(name, split=f"preview (first {PREVIEW} rows)")
        list(tokenized_rows(spec, opts, tokenizer, proc, limit=PREVIEW, report=rep))
        if rep.kept == 0:
            raise DataError(f"dataset {name!r}: none of its first {rep.total} rows is usable for {opts.kind}"
                            f"{' (it is empty)' if rep.total == 0 else ''}:\n{rep.summary()}")
        report.datasets.append(rep)
        report.identities[name] = data_identity(spec)
        specs.append(spec)
    ev, skip = None, _val_count(opts)
    if opts.eval_dataset:
        parts, erep = load_parts(opts.eval_dataset, tokenizer, opts, proc, "eval")
        report.extend(erep)
        ev = concat([p for _, p in parts])
    elif skip:
        rows = list(build_stream(specs, opts, str(tokenizer_dir), proc).take(skip))
        if len(rows) < skip:
            raise DataError(f"data.val_size={skip}: the stream has only {len(rows)} usable examples")
        ev = datasets.Dataset.from_list(rows, features=_features())
    if ev is not None:
        ev = shape(ev, opts, "eval", report)
        report.rows["eval"] = len(ev)
    spec = {"options": opts.to_dict(), "datasets": [s.to_dict() for s in specs], "identities": report.identities,
            "skip": skip, "proc": proc, "tokenizer": "tokenizer"}
    return spec, ev, report


def open_stream(load_dir: Path):
    """Train stage side: the training IterableDataset described by ``load_dir/stream.json``."""
    from llmpipe.data.packing import shape_batch

    load_dir = Path(load_dir)
    spec = json.loads((load_dir / "stream.json").read_text())
    opts = DataOptions.from_dict(spec["options"])
    specs = [DatasetSpec(**d) for d in spec["datasets"]]
    for s in specs:
        if data_identity(s) != spec["identities"].get(s.name):
            raise DataError(f"dataset {s.name!r} changed since the load stage read it ({s.source}); run again so "
                            "that the load stage (and its fingerprint) sees the new data")
    stream = build_stream(specs, opts, str(load_dir / spec["tokenizer"]), spec["proc"])
    if spec["skip"]:
        stream = stream.skip(spec["skip"])
    stream = stream.map(shape_batch, batched=True, batch_size=opts.preprocessing_batch_size,
                        remove_columns=["input_ids", "labels"],
                        features=_features("attention_mask", *(("position_ids",) if opts.neat_packing else ())),
                        fn_kwargs={"kind": opts.kind, "cutoff_len": opts.cutoff_len, "packing": opts.packing,
                                   "neat": opts.neat_packing})
    return stream.shuffle(seed=opts.seed, buffer_size=opts.buffer_size)
