"""Load, convert, tokenize, mix, split and pack the datasets of a run: ``build_datasets(cfg, tokenizer)``.

Per dataset: registry lookup -> raw rows -> ``num_samples`` (seeded resample) -> ``max_samples`` (first
N) -> format conversion -> tokenization (``datasets.map``, batched, ``preprocessing_num_workers``
processes). Then the datasets are mixed (``data.mix_strategy``), the evaluation split is taken
(``data.eval_dataset`` or ``data.val_size``) and train and eval are packed (or truncated) separately.
Bad rows are counted per dataset and split and returned in the DataReport (the load stage writes it
to data_report.json and logs it); a dataset left empty is a DataError naming it.
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from llmpipe.data.errors import DataError
from llmpipe.data.formats import convert_rows
from llmpipe.data.options import STAGE_KIND, DataOptions  # noqa: F401  (re-exported)
from llmpipe.data.registry import DatasetSpec, data_identity, find_dataset, known_names
from llmpipe.data.report import RowReport
from llmpipe.data.sources import read_rows  # noqa: F401  (re-exported)
from llmpipe.data.templates import apply_template, check_template_fits, template_default_system
from llmpipe.data.tools import resolve_tool_format

log = logging.getLogger("llmpipe.data")
KINDS = ("pt", "sft", "pairwise", "kto", "prompt")


@dataclass
class DataReport:
    datasets: list = field(default_factory=list)  # RowReport per dataset and split
    identities: dict = field(default_factory=dict)  # name -> data_identity
    rows: dict = field(default_factory=dict)  # split -> number of training sequences
    packing: dict = field(default_factory=dict)  # split -> {examples, sequences, tokens, fill}

    def extend(self, other: "DataReport") -> None:
        self.datasets += other.datasets
        self.identities.update(other.identities)

    def to_dict(self) -> dict:
        return {"datasets": [r.to_dict() for r in self.datasets], "identities": dict(self.identities),
                "rows": dict(self.rows), "packing": dict(self.packing)}

    def summary(self) -> str:
        return "\n".join(r.summary() for r in self.datasets)


@dataclass
class Bundle:
    train: object  # datasets.Dataset
    eval: object  # datasets.Dataset | None (all evaluation data, mixed)
    report: DataReport
    eval_each: dict | None = None  # name -> datasets.Dataset, with data.eval_on_each_dataset


def resolve_spec(name: str, opts: DataOptions) -> DatasetSpec:
    """The registry entry of dataset ``name``, checked against the stage's kind of data."""
    spec = find_dataset(name, opts.dataset_dir)
    if spec is None:
        known = ", ".join(known_names(opts.dataset_dir)) or "none"
        raise DataError(f"dataset {name!r} is not in {opts.dataset_dir}/dataset_info.json nor in the bundled "
                        f"registry, and is not a file or folder; known names: {known}")
    kind, what = opts.kind, f"stage {opts.stage}"
    if kind == "pairwise" and not spec.ranking:
        raise DataError(f"dataset {spec.name!r} is not a preference dataset (ranking: false), but {what} needs "
                        "chosen/rejected data registered with ranking: true")
    if kind != "pairwise" and spec.ranking:
        raise DataError(f"dataset {spec.name!r} is a preference dataset (ranking: true); {what} cannot use it")
    if kind == "kto" and not spec.kto:
        raise DataError(f"dataset {spec.name!r} has no kto_tag column; {what} needs one (columns.kto_tag)")
    return spec


def prepare_tokenizer(tokenizer, opts: DataOptions) -> dict:
    """Check that data.template fits ``tokenizer`` and put it on (in place); the processors' options."""
    if opts.kind == "pt":
        return {"truncate_to": None if opts.packing else opts.cutoff_len}
    problem = check_template_fits(tokenizer, opts.template)
    if problem:
        raise DataError(problem)
    apply_template(tokenizer, opts.template, opts.default_system, opts.enable_thinking, opts.preserve_thinking)
    return {"default_system": opts.default_system or template_default_system(opts.template),
            "tool_format": resolve_tool_format(opts.tool_format, opts.template), "cutoff_len": opts.cutoff_len,
            "train_on_prompt": opts.train_on_prompt, "mask_history": opts.mask_history,
            **({"template": opts.template, "enable_thinking": opts.enable_thinking,  # LF's spans (named templates)
                "preserve_thinking": opts.preserve_thinking}
               if opts.template and opts.kind == "sft" else {}),
            **({"template": opts.template}   # preference and prompt rows: tool turns through its slots, as SFT
               if opts.template and opts.kind in ("pairwise", "kto", "prompt") else {}),
            **({"native": "text" if opts.tool_format else "tools",  # the tokenizer's own template renders
                "enable_thinking": opts.enable_thinking, "preserve_thinking": opts.preserve_thinking}
               if opts.template is None and opts.kind == "sft" else {})}


def select_rows(n_rows: int, spec: DatasetSpec, opts: DataOptions) -> list[int]:
    """Row indices after ``num_samples`` (seeded, with replacement beyond the size) and ``max_samples``."""
    idx = list(range(n_rows))
    n = spec.num_samples
    if n is not None and n != len(idx) and n_rows:
        rng = random.Random(f"{opts.seed}:{spec.name}")
        idx = sorted(rng.sample(idx, n)) if n < len(idx) else idx + [rng.randrange(n_rows) for _ in range(n - len(idx))]
    return idx[:opts.max_samples] if opts.max_samples else idx


def refuse_media(examples: list[dict], rep: RowReport, mm=None, kind: str = "sft") -> None:
    """Rows with media the run cannot use are refused, never trained as placeholder text: any media for a
    text-only model (``mm`` None), videos/audios, and images outside supervised fine-tuning."""
    if mm is not None and kind in ("sft", "pairwise", "kto"):   # images: sft, dpo, kto (rm: refused below)
        readable = {"images", "videos"} if kind == "sft" and getattr(mm, "video", None) is not None else {"images"}
        if getattr(mm, "column", None) == "audios":   # an audio-language model: audio rows, sft only
            readable = set(getattr(mm, "readable", {"audios"})) if kind == "sft" else set()   # Omni: all three
        other = sum(1 for ex in examples if set(ex.get("media") or {}) - readable)
        if other:
            raise DataError(f"dataset {rep.dataset!r}: {other} rows carry videos or audios this run cannot read "
                            "(videos: the Qwen-VL family, LLaVA-NeXT-Video and Qwen2.5-Omni, with sft; "
                            "docs/multimodal.md)")
        return
    with_media = sum(1 for ex in examples if ex.get("media"))
    if with_media:
        why = ("the model is text-only (it has no image processor), so the media would be ignored; use a "
               "vision-language model such as model=tiny_vl" if mm is None else
               f"train.stage with {kind} rows does not take images (sft, dpo and kto do; TRL's reward "
               "trainer has no image path)")
        raise DataError(f"dataset {rep.dataset!r}: {with_media} rows carry images/videos/audios, and {why}. "
                        f"The media check itself passed for them:\n{rep.summary()}")


def convert_dataset(spec: DatasetSpec, opts: DataOptions, split: str, mm=None) -> tuple[list[dict], RowReport]:
    rows = read_rows(spec)
    idx = select_rows(len(rows), spec, opts)
    examples, rep = convert_rows([rows[i] for i in idx], spec, opts.kind, idx, opts.media_root)
    rep.split = split
    if not rows:
        raise DataError(f"dataset {spec.name!r} is empty: {spec.source} holds no rows")
    if not examples:
        raise DataError(f"dataset {spec.name!r} has no usable rows for {opts.kind}:\n{rep.summary()}")
    refuse_media(examples, rep, mm, "rm" if opts.stage == "rm" else opts.kind)
    return examples, rep


def tokenize_examples(examples: list[dict], tokenizer, opts: DataOptions, proc: dict, rep: RowReport):
    """Tokenized ``datasets.Dataset`` of sft/pt examples; bad rows go to ``rep``."""
    import datasets
    import pyarrow.compute as pc

    from llmpipe.data.processors import tokenize_batch

    cols = ("messages", "system", "tools", "_row")
    ds = datasets.Dataset.from_list([{k: ex.get(k) for k in cols} for ex in examples])
    ds = ds.map(tokenize_batch, batched=True, batch_size=opts.preprocessing_batch_size,
                num_proc=opts.preprocessing_num_workers, remove_columns=list(cols),
                fn_kwargs={"tokenizer": tokenizer, "kind": opts.kind, **proc}, desc=f"tokenizing {rep.dataset}")
    bad, rows = ds["_bad"], ds["_row"]
    for r, b in zip(rows, bad):
        if b:
            rep.bad(r, b)
    lengths = pc.list_value_length(ds.data.column("_notes")).to_pylist()
    if any(lengths):
        for notes in ds["_notes"]:
            rep.notes.update(notes)
    good = [i for i, b in enumerate(bad) if not b]
    if len(good) != len(ds):
        ds = ds.select(good)
    return ds.remove_columns(["_row", "_bad", "_notes"])


def process_dataset(examples: list[dict], tokenizer, opts: DataOptions, proc: dict, rep: RowReport):
    import datasets

    from llmpipe.data import processors as P

    if proc.get("mm") is not None and opts.kind == "sft" and getattr(proc["mm"], "column", None) == "audios":
        from llmpipe.data import mm_audio_rows   # an audio-language model: clips tokenized too

        ds = mm_audio_rows.tokenize_examples(examples, tokenizer, proc["mm"], proc, rep, opts.media_root)
    elif proc.get("mm") is not None and opts.kind == "sft":   # a vision-language model: images tokenized too
        from llmpipe.data import mm_video   # images through mm_tokenize, videos too where the model reads them

        ds = mm_video.tokenize_examples(examples, tokenizer, proc["mm"], proc, rep, opts.media_root)
    elif opts.kind in ("pt", "sft"):
        ds = tokenize_examples(examples, tokenizer, opts, proc, rep)
    else:
        fn = {"pairwise": P.process_pairwise, "kto": P.process_kto, "prompt": P.process_prompt}[opts.kind]
        if proc.get("mm") is not None and opts.kind in ("pairwise", "kto"):   # image preference rows (dpo, kto)
            from llmpipe.data.mm_pairwise import process_rows

            rows = process_rows(examples, tokenizer, proc["mm"], proc, rep, opts.media_root, opts.kind)
        else:
            rows = fn(examples, **proc)
            for ex, row in zip(examples, rows):   # a tool call its tool format cannot write: a bad row
                if "_bad" in row:
                    rep.bad(ex["_row"], row["_bad"])
            rows = [r for r in rows if "_bad" not in r]
        if opts.kind in ("pairwise", "kto") and opts.cutoff_len:
            rep.notes.update(pref_truncation(rows, tokenizer, opts.cutoff_len))
        ds = datasets.Dataset.from_list(rows)
    rep.kept = len(ds)
    if rep.dropped:
        log.warning("%s", rep.summary())
    else:
        log.debug("%s", rep.summary())
    if not len(ds):
        raise DataError(f"dataset {rep.dataset!r} has no usable rows for {opts.kind}:\n{rep.summary()}")
    return ds


def pref_truncation(rows: list[dict], tokenizer, cutoff_len: int) -> Counter:
    """What TRL's cut to ``max_length`` (= data.cutoff_len) will do to preference rows, counted as SFT counts its
    truncation: TRL tokenizes these rows itself and truncates silently. A pair counts once when its chosen or
    its rejected conversation is longer; a KTO row whose prompt alone fills cutoff_len is dropped by TRL."""
    pairs = bool(rows) and "chosen" in rows[0]
    convs = [r["prompt"] + r[k] for r in rows for k in (("chosen", "rejected") if pairs else ("completion",))]
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in convs]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
    notes: Counter = Counter()
    if pairs:
        notes["pair longer than cutoff_len (TRL cuts its end)"] = sum(
            max(lengths[2 * i], lengths[2 * i + 1]) > cutoff_len for i in range(len(rows)))
    else:
        long = [i for i, n in enumerate(lengths) if n > cutoff_len and rows[i]["prompt"]]
        prompts = [tokenizer.apply_chat_template(rows[i]["prompt"], tokenize=False, add_generation_prompt=True)
                   for i in long]
        plens = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
        dropped = [i for i, ids in zip(long, plens) if len(ids) >= cutoff_len]
        for label in (True, False):
            n = sum(bool(rows[i]["label"]) is label for i in dropped)
            notes[f"prompt alone fills cutoff_len (TRL drops the {'desirable' if label else 'undesirable'}"
                  " example)"] = n
        notes["example longer than cutoff_len (TRL cuts its end)"] = sum(n > cutoff_len for n in lengths) - len(dropped)
        if dropped:
            # TRL warns about any difference between the two counts it trains on; say where one comes from
            kept = Counter(bool(r["label"]) for i, r in enumerate(rows) if i not in set(dropped))
            before = Counter(bool(r["label"]) for r in rows)
            if kept[True] != kept[False] and before[True] == before[False]:
                notes[f"balanced data made unequal by TRL's drops: {kept[True]} desirable / {kept[False]}"
                      " undesirable trained (pref.kto_chosen_weight / kto_rejected_weight rebalance it)"] = 1
    return +notes   # only the counts above zero


def load_parts(names, tokenizer, opts: DataOptions, proc: dict, split: str) -> tuple[list, DataReport]:
    """[(name, processed dataset)] for ``names``, with their reports."""
    report, parts = DataReport(), []
    for name in names:
        spec = resolve_spec(name, opts)
        examples, rep = convert_dataset(spec, opts, split, proc.get("mm"))
        parts.append((name, process_dataset(examples, tokenizer, opts, proc, rep)))
        report.datasets.append(rep)
        report.identities[name] = data_identity(spec)
    return parts, report


def mix(parts: list, opts: DataOptions):
    """One dataset from several (``datasets.Dataset`` or ``IterableDataset``) by ``data.mix_strategy``."""
    import datasets

    if len(parts) == 1:
        return parts[0]
    if opts.mix_strategy == "concat":
        return datasets.concatenate_datasets(parts)
    stop = {"interleave_under": "first_exhausted", "interleave_over": "all_exhausted",
            "interleave_once": "all_exhausted_without_replacement"}.get(opts.mix_strategy)
    if stop is None:
        raise DataError(f"data.mix_strategy={opts.mix_strategy!r}; allowed: concat, interleave_under, "
                        "interleave_over, interleave_once")
    probs = list(opts.interleave_probs) if opts.interleave_probs else None
    if probs is not None and len(probs) != len(parts):
        raise DataError(f"data.interleave_probs has {len(probs)} values for {len(parts)} datasets")
    return datasets.interleave_datasets(parts, probabilities=probs, seed=opts.seed, stopping_strategy=stop)


def concat(parts: list):
    import datasets

    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def val_count(val: float, n: int) -> int:
    if val < 0 or (val >= 1 and val != int(val)):
        raise DataError(f"data.val_size={val}: a fraction in (0, 1) or a whole number of rows")
    k = int(val) if val >= 1 else round(val * n)
    if k < 1 or k >= n:
        raise DataError(f"data.val_size={val} leaves no training or no evaluation rows ({n} rows)")
    return k


def shape(ds, opts: DataOptions, split: str, report: DataReport):
    """Pack (or truncate) tokenized pt/sft rows and add attention_mask; other kinds pass through."""
    if opts.kind not in ("pt", "sft") or {"images", "audios"} & set(ds.column_names):   # media rows: never packed
        return ds
    import pyarrow.compute as pc

    from llmpipe.data.packing import shape_batch

    n = len(ds)
    ds = ds.map(shape_batch, batched=True, batch_size=opts.preprocessing_batch_size,
                num_proc=opts.preprocessing_num_workers, remove_columns=ds.column_names,
                fn_kwargs={"kind": opts.kind, "cutoff_len": opts.cutoff_len, "packing": opts.packing,
                           "neat": opts.neat_packing}, desc=f"packing {split}" if opts.packing else None)
    if opts.packing:
        tokens = pc.sum(pc.list_value_length(ds.data.column("input_ids"))).as_py() or 0
        report.packing[split] = {"examples": n, "sequences": len(ds), "tokens": tokens,
                                 "fill": round(tokens / max(1, len(ds) * (opts.cutoff_len or 1)), 4),
                                 "neat": opts.neat_packing}
    return ds


def _quiet():
    import contextlib

    import datasets

    @contextlib.contextmanager
    def ctx():
        was = datasets.utils.logging.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            yield
        finally:
            if was:
                datasets.enable_progress_bars()
    return ctx()


def build_datasets(cfg, tokenizer, mm=None) -> Bundle:
    """Train and eval datasets for ``train.stage`` from ``data.dataset`` / ``data.eval_dataset`` /
    ``data.val_size`` (``cfg`` may also be a DataOptions); ``mm``: the image tokenization of a vision-language
    model (llmpipe.data.mm_tokenize.ImageTokens), None for a text-only one."""
    opts = cfg if isinstance(cfg, DataOptions) else DataOptions.from_cfg(cfg)
    if opts.kind not in KINDS:
        raise DataError(f"train.stage={opts.stage!r} has no data kind; known: {', '.join(STAGE_KIND)}")
    if not opts.dataset and not opts.eval_dataset:
        raise DataError("data.dataset is empty: name at least one dataset (comma-separated)")
    if opts.eval_dataset and opts.val_size:
        raise DataError("set either data.val_size or data.eval_dataset, not both")
    for name in opts.dataset + opts.eval_dataset:  # every name and kind checked before any work
        resolve_spec(name, opts)
    with _quiet():
        proc = prepare_tokenizer(tokenizer, opts)
        if mm is not None:
            proc["mm"] = mm
        parts, report = load_parts(opts.dataset, tokenizer, opts, proc, "train")
        train, ev, each = (mix([p for _, p in parts], opts) if parts else None), None, None
        if opts.eval_dataset:
            eparts, erep = load_parts(opts.eval_dataset, tokenizer, opts, proc, "eval")
            report.extend(erep)
            ev = concat([p for _, p in eparts])  # evaluation covers every example once: never interleaved
            if opts.eval_on_each_dataset:
                each = {name: shape(p, opts, f"eval:{name}", report) for name, p in eparts}
        elif opts.val_size:
            cut = train.train_test_split(test_size=val_count(opts.val_size, len(train)), seed=opts.seed, shuffle=True)
            train, ev = cut["train"], cut["test"]
        if train is None:   # evaluation or prediction only (data.eval_dataset alone): an empty train split
            train = ev.select([])
        train = shape(train, opts, "train", report)
        ev = shape(ev, opts, "eval", report) if ev is not None else None
    report.rows = {"train": len(train), **({"eval": len(ev)} if ev is not None else {})}
    return Bundle(train, ev, report, each)
