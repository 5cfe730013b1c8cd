"""GPTQ calibration text (``export.quantization_dataset``): a dataset name from dataset_info.json (or the
bundled registry) or a local file, whose rows have a ``text`` column (or the column the registry maps as
``prompt`` for a pre-training dataset).

A few documents are held out (never used for calibration) to measure perplexity before and after
quantization. The rest are tokenized, joined with the end-of-sequence token, and cut into windows of
``export.quantization_maxlen`` tokens, of which ``export.quantization_nsamples`` are drawn (seeded).
"""
from __future__ import annotations

import random
from typing import Any

from llmpipe.data.errors import DataError

HELD_OUT_MAX = 32
MIN_TOKENS = 8


def read_texts(name: str, dataset_dir: str | None) -> list[str]:
    """The non-empty texts of calibration dataset ``name``; DataError when missing or malformed."""
    from llmpipe.data.loader import read_rows
    from llmpipe.data.registry import find_dataset
    from llmpipe.data.report import BadRow

    key = "export.quantization_dataset"
    try:
        spec = find_dataset(str(name), dataset_dir)
    except DataError:
        raise
    except ValueError as e:   # a file whose first record is not valid JSON
        raise DataError(f"{key}={name}: not valid JSON ({e})") from None
    if spec is None:
        raise DataError(f"{key}={name}: no such dataset in dataset_info.json (data.dataset_dir={dataset_dir}) "
                        "nor the bundled registry, and no such file")
    rows = read_rows(spec)
    bad = [i for i, r in enumerate(rows, 1) if isinstance(r, BadRow) or not isinstance(r, dict)]
    if bad:
        raise DataError(f"{key}={name}: row(s) {', '.join(map(str, bad[:5]))} cannot be read (not a JSON object)")
    if not rows:
        raise DataError(f"{key}={name}: the dataset is empty")
    columns = sorted({k for r in rows for k in r})
    prompt = (spec.columns or {}).get("prompt")
    column = "text" if "text" in columns else prompt if prompt in columns and prompt != "instruction" else None
    if column is None:
        raise DataError(f"{key}={name}: calibration rows need a `text` column (plain documents); "
                        f"this dataset has {columns}")
    texts = [r[column] for r in rows if isinstance(r.get(column), str) and r[column].strip()]
    if len(texts) < 2:
        raise DataError(f"{key}={name}: {len(texts)} non-empty `{column}` value(s); at least 2 documents are "
                        "needed (one is held out to measure perplexity)")
    return texts


def split(texts: list[str], seed: int) -> tuple[list[str], list[str]]:
    """(calibration texts, held-out texts): up to 10% (at most 32, at least 1) held out, seeded."""
    order = list(range(len(texts)))
    random.Random(f"{seed}:calibration").shuffle(order)
    n = max(1, min(HELD_OUT_MAX, len(texts) // 10))
    held = sorted(order[:n])
    keep = sorted(order[n:])
    return [texts[i] for i in keep], [texts[i] for i in held]


def samples(texts: list[str], tokenizer: Any, nsamples: int, maxlen: int, seed: int) -> list[list[int]]:
    """Up to ``nsamples`` windows of ``maxlen`` tokens from the joined documents (fewer when the text is
    short: every window there is; a single shorter window when there is less than ``maxlen`` tokens)."""
    rng = random.Random(f"{seed}:calibration-windows")
    order = list(texts)
    rng.shuffle(order)
    eos = getattr(tokenizer, "eos_token_id", None)
    stream: list[int] = []
    for text in order:
        stream += list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
    if len(stream) < MIN_TOKENS:
        raise DataError(f"export.quantization_dataset: only {len(stream)} tokens of calibration text; GPTQ needs "
                        f"at least {MIN_TOKENS}")
    windows = [stream[i:i + maxlen] for i in range(0, max(1, len(stream) - maxlen + 1), maxlen)]
    windows = [w for w in windows if len(w) == maxlen] or [stream[:maxlen]]
    if len(windows) > nsamples:
        windows = [windows[i] for i in sorted(rng.sample(range(len(windows)), nsamples))]
    return windows
