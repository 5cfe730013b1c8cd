"""Packing: several tokenized examples in one training sequence.

* pre-training (``data.packing``, on by default for pt): documents (each ending in eos) are concatenated
  and cut into ``cutoff_len`` blocks; without packing each document is truncated to ``cutoff_len``.
* supervised packing (``data.packing=true``, sft): whole examples (already truncated to ``cutoff_len``)
  go into bins of at most ``cutoff_len`` tokens, best fit, longest first; an example is never split.
  Tokens of one example attend to the earlier examples of its bin (plain causal attention).
* neat packing (``data.neat_packing=true``, sft): the same bins plus ``position_ids`` that restart at 0
  for every example; the collator (llmpipe.training.collators) turns them into attention that cannot
  cross examples, so every example is computed exactly as if it were alone.

In both sft modes the label of each example's first token is -100: in a sequence of its own that token
is never predicted, and in a bin it would be predicted from the previous example's last token.
Packing runs per batch of ``preprocessing_batch_size`` examples (``datasets.map``), so it streams too.
``cutoff_len`` is the bin size as written: nothing is subtracted from it.
"""
from __future__ import annotations

import bisect
from collections import Counter

IGNORE_INDEX = -100


def best_fit_bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices grouped into bins of total length <= ``capacity`` (best fit decreasing; deterministic)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    free: list[tuple[int, int]] = []  # (remaining capacity, bin id), sorted
    bins: list[list[int]] = []
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"an example of {n} tokens does not fit cutoff_len={capacity}")
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            room, b = free.pop(k)
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - n > 0:
            bisect.insort(free, (room - n, b))
    return [sorted(b) for b in bins]


def pack_supervised(input_ids: list[list[int]], labels: list[list[int]], cutoff_len: int, neat: bool) -> dict:
    out = {"input_ids": [], "labels": []} | ({"position_ids": []} if neat else {})
    for b in best_fit_bins([len(x) for x in input_ids], cutoff_len):
        ids, labs, pos = [], [], []
        for i in b:
            ids += input_ids[i]
            labs += [IGNORE_INDEX] + list(labels[i][1:])
            pos += list(range(len(input_ids[i])))
        out["input_ids"].append(ids)
        out["labels"].append(labs)
        if neat:
            out["position_ids"].append(pos)
    return out


def shape_pretrain(docs: list[list[int]], cutoff_len: int | None, packing: bool) -> tuple[list[list[int]], Counter]:
    """Blocks of concatenated documents (packing) or truncated documents; with notes on what changed."""
    notes: Counter = Counter()
    if packing and cutoff_len:
        flat = [t for d in docs for t in d]
        blocks = [flat[i:i + cutoff_len] for i in range(0, len(flat), cutoff_len)]
        if blocks and len(blocks[-1]) < cutoff_len:
            notes["packed block shorter than cutoff_len (the end of a batch)"] += 1
        return blocks, notes
    blocks = []
    for d in docs:
        if cutoff_len and len(d) > cutoff_len:
            notes["document truncated to cutoff_len"] += 1
            d = d[:cutoff_len]
        blocks.append(d)
    return blocks, notes


def shape_batch(batch: dict, *, kind: str, cutoff_len: int | None, packing: bool, neat: bool) -> dict:
    """``datasets.map`` function (batched): tokenized rows -> training sequences with attention_mask."""
    if kind == "pt":
        blocks, _ = shape_pretrain(batch["input_ids"], cutoff_len, packing)
        out = {"input_ids": blocks, "labels": [list(b) for b in blocks]}
    elif packing:
        out = pack_supervised(batch["input_ids"], batch["labels"], cutoff_len, neat)
    else:
        out = {"input_ids": batch["input_ids"], "labels": batch["labels"]}
    out["attention_mask"] = [[1] * len(x) for x in out["input_ids"]]
    return out
