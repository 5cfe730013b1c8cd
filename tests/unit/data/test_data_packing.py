"""Packing: best-fit bins, supervised packing with position ids restarting per example (neat), pre-training
chunks, the pt-only default, cutoff_len taken as written, nothing lost."""
from __future__ import annotations

import random
import types
from collections import Counter

import pytest

from llmpipe.data.loader import build_datasets
from llmpipe.data.options import DataOptions
from llmpipe.data.packing import IGNORE_INDEX, best_fit_bins, pack_supervised


@pytest.fixture(scope="module")
def tok():
    from llmpipe.models.tiny import build_tokenizer

    return build_tokenizer("builtin:tiny")


def test_best_fit_bins():
    rng = random.Random(0)
    lengths = [rng.randint(1, 50) for _ in range(300)]
    bins = best_fit_bins(lengths, 64)
    assert sorted(i for b in bins for i in b) == list(range(300))  # every example exactly once
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    assert len(bins) <= -(-sum(lengths) // 64) * 1.1  # near the lower bound
    assert best_fit_bins([64, 64, 1], 64) == [[0], [1], [2]]  # a bin may be exactly cutoff_len
    with pytest.raises(ValueError, match="does not fit cutoff_len=64"):
        best_fit_bins([65], 64)


def test_pack_supervised_masks_first_tokens_and_restarts_positions():
    ids = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    labels = [[-100, 2, 3], [-100, 5], [6, 7, 8, 9]]
    out = pack_supervised(ids, labels, 5, neat=True)
    rows = sorted(zip(out["input_ids"], out["labels"], out["position_ids"]))
    assert rows == [([1, 2, 3, 4, 5], [IGNORE_INDEX, 2, 3, IGNORE_INDEX, 5], [0, 1, 2, 0, 1]),
                    ([6, 7, 8, 9], [IGNORE_INDEX, 7, 8, 9], [0, 1, 2, 3])]
    assert "position_ids" not in pack_supervised(ids, labels, 5, neat=False)


def cfg(**data):
    d = dict(dataset=["demo_sft"], max_samples=60, cutoff_len=128, preprocessing_batch_size=25)
    stage = data.pop("stage", "sft")
    d.update(data)
    return types.SimpleNamespace(data=types.SimpleNamespace(**d), train=types.SimpleNamespace(seed=0, stage=stage))


def segments(row):
    """The examples of a packed row, split where the position ids restart."""
    cut = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
    return [tuple(row["input_ids"][a:b]) for a, b in zip(cut, cut[1:])]


def test_neat_and_plain_sft_packing_keep_every_example(tok):
    plain = build_datasets(cfg(), tok)
    neat = build_datasets(cfg(neat_packing=True), tok)
    packed = build_datasets(cfg(packing=True), tok)
    assert "position_ids" not in plain.train.column_names and "position_ids" not in packed.train.column_names
    assert len(neat.train) == len(packed.train) < len(plain.train) == 60
    assert all(len(x) <= 128 for x in neat.train["input_ids"])  # cutoff_len as written: no silent cutoff_len-1
    alone = Counter(tuple(x) for x in plain.train["input_ids"])
    assert Counter(s for row in neat.train for s in segments(row)) == alone  # every example once, whole
    assert neat.train["input_ids"] == packed.train["input_ids"]  # same bins, only the attention differs
    assert sum(x != IGNORE_INDEX for r in neat.train["labels"] for x in r) == \
        sum(x != IGNORE_INDEX for r in plain.train["labels"] for x in r)  # the same tokens are trained
    p = neat.report.packing["train"]
    assert p["examples"] == 60 and p["sequences"] == len(neat.train) and p["neat"] and 0.5 < p["fill"] <= 1


def test_packing_defaults_on_for_pt_only(tok):
    assert DataOptions.from_cfg(cfg(stage="pt", packing=None)).packing
    assert not DataOptions.from_cfg(cfg(packing=None)).packing
    assert DataOptions.from_cfg(cfg(neat_packing=True)).packing
    pt = build_datasets(cfg(stage="pt", dataset=["demo_pt"], cutoff_len=64), tok)  # 60 documents, batches of 25
    lengths = [len(x) for x in pt.train["input_ids"]]
    assert max(lengths) == 64 and sum(n < 64 for n in lengths) <= 3 and "train" in pt.report.packing
    whole = build_datasets(cfg(stage="pt", dataset=["demo_pt"], cutoff_len=4096, packing=False), tok)
    assert sum(lengths) == sum(map(len, whole.train["input_ids"]))  # nothing lost, nothing added
    docs = build_datasets(cfg(stage="pt", dataset=["demo_pt"], cutoff_len=16, packing=False), tok)
    assert len(docs.train) == 60 and max(map(len, docs.train["input_ids"])) == 16
    assert docs.report.datasets[0].notes["document truncated to cutoff_len"] > 0


def test_eval_is_packed_on_its_own(tok):
    b = build_datasets(cfg(neat_packing=True, val_size=20), tok)
    assert b.report.packing["eval"]["examples"] == 20 and b.report.packing["train"]["examples"] == 40
    assert sum(len(segments(r)) for r in b.train) == 40 and sum(len(segments(r)) for r in b.eval) == 20


def test_workers_and_batch_size_do_not_change_the_data(tok):
    one = build_datasets(cfg(preprocessing_batch_size=7), tok)
    two = build_datasets(cfg(preprocessing_batch_size=1000, preprocessing_num_workers=2), tok)
    assert one.train["input_ids"] == two.train["input_ids"] and one.train["labels"] == two.train["labels"]
