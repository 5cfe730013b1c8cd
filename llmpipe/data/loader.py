"""Load, convert, process and mix datasets for a run: ``build_datasets(cfg, tokenizer)``.

Per dataset: registry lookup -> raw rows -> ``num_samples`` (seeded resample) -> ``max_samples``
(first N) -> format conversion -> processor; then the datasets are mixed (``data.mix_strategy``) and
the evaluation split is taken from ``data.eval_dataset`` or ``data.val_size``. Bad rows are reported
per dataset (logged, and returned in the DataReport for the lock file); a dataset left empty is a
DataError naming it.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from llmpipe.data import processors as P
from llmpipe.data.errors import DataError
from llmpipe.data.formats import BadRow, convert_rows
from llmpipe.data.registry import DatasetSpec, data_identity, find_dataset, known_names
from llmpipe.data.templates import apply_template

log = logging.getLogger("llmpipe.data")
STAGE_KIND = {"pt": "pt", "sft": "sft", "rm": "pairwise", "dpo": "pairwise", "kto": "kto", "ppo": "prompt"}
KINDS = ("pt", "sft", "pairwise", "kto", "prompt")


@dataclass
class DataReport:
    datasets: list = field(default_factory=list)  # RowReport per dataset and split
    identities: dict = field(default_factory=dict)  # name -> data_identity
    rows: dict = field(default_factory=dict)  # split -> number of processed rows

    def extend(self, other: "DataReport") -> None:
        self.datasets += other.datasets
        self.identities.update(other.identities)
        self.rows.update(other.rows)

    def to_dict(self) -> dict:
        return {"datasets": [r.to_dict() for r in self.datasets], "identities": dict(self.identities),
                "rows": dict(self.rows)}

    def summary(self) -> str:
        return "\n".join(r.summary() for r in self.datasets)


@dataclass
class Bundle:
    train: object  # datasets.Dataset
    eval: object  # datasets.Dataset | None
    report: DataReport


def _get(cfg, dotted: str, default=None):
    obj = cfg
    for part in dotted.split("."):
        obj = obj.get(part, None) if isinstance(obj, dict) else getattr(obj, part, None)
        if obj is None:
            return default
    return obj


def split_names(value) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [s.strip() for s in items if str(s).strip()]


def _read_file(path: Path, ftype: str) -> list:
    """Rows of one file; unreadable JSONL lines become BadRow placeholders."""
    if ftype == "json":
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            try:
                data = json.loads(text)
            except ValueError as e:
                raise DataError(f"{path}: not valid JSON ({e})") from None
            if not isinstance(data, list):
                raise DataError(f"{path}: must hold a JSON list of rows (or JSON lines)")
            return data
        rows = []
        for line in (ln for ln in text.splitlines() if ln.strip()):
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                rows.append(BadRow(f"line is not valid JSON ({e.msg})"))
        return rows
    if ftype == "text":
        return [{"text": ln} for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    import pyarrow as pa

    if ftype == "csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path).to_pylist()
    if ftype == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with pa.memory_map(str(path)) as src:
        try:
            return pa.ipc.open_stream(src).read_all().to_pylist()
        except pa.ArrowInvalid:
            return pa.ipc.open_file(src).read_all().to_pylist()


def read_rows(spec: DatasetSpec) -> list:
    """Raw rows of a dataset (BadRow placeholders where a line could not be parsed)."""
    if spec.source_kind == "hub":
        import datasets

        ds = datasets.load_dataset(spec.source, name=spec.subset, split=spec.split, revision=spec.revision,
                                   data_dir=spec.folder)
        return ds.to_list()
    if spec.source_kind != "file":
        raise DataError(f"dataset {spec.name!r}: {spec.source_kind} sources ({spec.source}) are not supported")
    root = Path(spec.source)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".md")
    rows = []
    for f in files:
        rows += _read_file(f, spec.file_type or "json")
    return rows


def _select(rows: list, spec: DatasetSpec, max_samples, seed: int) -> list[int]:
    idx = list(range(len(rows)))
    n = spec.num_samples
    if n is not None and n != len(idx):
        rng = random.Random(f"{seed}:{spec.name}")
        idx = sorted(rng.sample(idx, n)) if n < len(idx) else idx + [rng.randrange(len(rows)) for _ in range(n - len(idx))]
    return idx[:max_samples] if max_samples else idx


def _check_kind(spec: DatasetSpec, kind: str, stage: str | None) -> None:
    what = f"stage {stage}" if stage else f"{kind} data"
    if kind == "pairwise" and not spec.ranking:
        raise DataError(f"dataset {spec.name!r} is not a preference dataset (ranking: false), but {what} needs "
                        "chosen/rejected data registered with ranking: true")
    if kind != "pairwise" and spec.ranking:
        raise DataError(f"dataset {spec.name!r} is a preference dataset (ranking: true); {what} cannot use it")
    if kind == "kto" and not spec.kto:
        raise DataError(f"dataset {spec.name!r} has no kto_tag column; {what} needs one (columns.kto_tag)")


def _process(examples, tokenizer, kind, cfg, report, idx):
    data = lambda k, d=None: _get(cfg, "data." + k, d)  # noqa: E731
    common = dict(default_system=data("default_system"))
    if kind == "sft":
        return P.process_supervised(examples, tokenizer, cutoff_len=data("cutoff_len"),
                                    train_on_prompt=bool(data("train_on_prompt", False)),
                                    mask_history=bool(data("mask_history", False)), report=report, indices=idx,
                                    batch_size=data("preprocessing_batch_size", 1000), **common)
    if kind == "pt":
        packing = data("packing")
        return P.process_pretrain(examples, tokenizer, cutoff_len=data("cutoff_len"),
                                  packing=True if packing is None else bool(packing), report=report, indices=idx)
    fn = {"pairwise": P.process_pairwise, "kto": P.process_kto, "prompt": P.process_prompt}[kind]
    return fn(examples, **common)


def _mix(parts: list, cfg, seed: int):
    import datasets

    if len(parts) == 1:
        return parts[0]
    strategy = _get(cfg, "data.mix_strategy", "concat") or "concat"
    if strategy == "concat":
        return datasets.concatenate_datasets(parts)
    stop = {"interleave_under": "first_exhausted", "interleave_over": "all_exhausted",
            "interleave_once": "all_exhausted_without_replacement"}.get(strategy)
    if stop is None:
        raise DataError(f"data.mix_strategy={strategy!r}; allowed: concat, interleave_under, interleave_over, "
                        "interleave_once")
    probs = _get(cfg, "data.interleave_probs")
    if isinstance(probs, str):
        probs = probs.split(",")
    probs = [float(p) for p in probs if str(p).strip()] if probs is not None else None
    if probs is not None and len(probs) != len(parts):
        raise DataError(f"data.interleave_probs has {len(probs)} values for {len(parts)} datasets")
    return datasets.interleave_datasets(parts, probabilities=probs, seed=seed, stopping_strategy=stop)


def load_split(cfg, names: list[str], tokenizer, kind: str):
    """Load datasets ``names`` for ``kind`` (pt, sft, pairwise, kto, prompt) -> (datasets.Dataset, DataReport).

    Puts ``data.template`` on the tokenizer (in place) for every kind but pt.
    """
    import datasets

    if kind not in KINDS:
        raise DataError(f"unknown data kind {kind!r}; allowed: {', '.join(KINDS)}")
    names = split_names(names)
    if not names:
        raise DataError("data.dataset is empty: name at least one dataset")
    dataset_dir = _get(cfg, "data.dataset_dir", "data")
    seed = int(_get(cfg, "train.seed", 42))
    stage = _get(cfg, "train.stage")
    if kind != "pt":
        apply_template(tokenizer, _get(cfg, "data.template"), _get(cfg, "data.default_system"))
    report, parts = DataReport(), []
    for name in names:
        spec = find_dataset(name, dataset_dir)
        if spec is None:
            known = ", ".join(known_names(dataset_dir)) or "none"
            raise DataError(f"dataset {name!r} is not in {dataset_dir}/dataset_info.json nor in the bundled "
                            f"registry, and is not a file or folder; known names: {known}")
        _check_kind(spec, kind, stage)
        rows = read_rows(spec)
        idx = _select(rows, spec, _get(cfg, "data.max_samples"), seed)
        examples, rep = convert_rows([rows[i] for i in idx], spec, kind, idx)
        if not examples:
            log.warning("%s", rep.summary())
            raise DataError(f"dataset {name!r} has no usable rows for {kind}:\n{rep.summary()}")
        processed = _process(examples, tokenizer, kind, cfg, rep, [e["_row"] for e in examples])
        if kind in ("pairwise", "kto", "prompt"):
            rep.kept = len(processed)
        report.datasets.append(rep)
        report.identities[name] = data_identity(spec)
        if rep.dropped:
            log.warning("%s", rep.summary())
        elif rep.notes:
            log.info("%s", rep.summary())
        if not processed:
            raise DataError(f"dataset {name!r} has no usable rows for {kind}:\n{rep.summary()}")
        parts.append(datasets.Dataset.from_list(processed))
    return _mix(parts, cfg, seed), report


def build_datasets(cfg, tokenizer) -> Bundle:
    """Train and eval datasets for ``cfg.train.stage`` from ``data.dataset`` / ``data.eval_dataset`` /
    ``data.val_size``."""
    stage = _get(cfg, "train.stage", "sft")
    if stage not in STAGE_KIND:
        raise DataError(f"train.stage={stage!r} has no data kind; known: {', '.join(STAGE_KIND)}")
    kind = STAGE_KIND[stage]
    names = split_names(_get(cfg, "data.dataset"))
    if not names:
        raise DataError("data.dataset is empty: name at least one dataset (comma-separated)")
    train, report = load_split(cfg, names, tokenizer, kind)
    eval_names = split_names(_get(cfg, "data.eval_dataset"))
    val = float(_get(cfg, "data.val_size", 0) or 0)
    ev = None
    if eval_names:
        if val:
            raise DataError("set either data.val_size or data.eval_dataset, not both")
        ev, erep = load_split(cfg, eval_names, tokenizer, kind)
        report.extend(erep)
    elif val:
        if val >= 1 and val != int(val) or val < 0:
            raise DataError(f"data.val_size={val}: a fraction in (0, 1) or a whole number of rows")
        n = int(val) if val >= 1 else val
        if (n if val >= 1 else round(val * len(train))) >= len(train) or (val < 1 and round(val * len(train)) < 1):
            raise DataError(f"data.val_size={val} leaves no training or no evaluation rows ({len(train)} rows)")
        parts = train.train_test_split(test_size=n, seed=int(_get(cfg, "train.seed", 42)), shuffle=True)
        train, ev = parts["train"], parts["test"]
    report.rows = {"train": len(train), **({"eval": len(ev)} if ev is not None else {})}
    return Bundle(train, ev, report)
