"""A predict or evaluate config with data.eval_dataset alone (docs/inference.md: predict uses the eval
dataset) tokenizes that dataset and an empty train split; it failed with "data.dataset is empty" after
passing pre-flight before."""
from __future__ import annotations

import types

import pytest

from llmpipe.data.errors import DataError
from llmpipe.data.loader import build_datasets


def _cfg(**data):
    d = dict(dataset=[], eval_dataset=["demo_sft"], max_samples=12, cutoff_len=128)
    d.update(data)
    return types.SimpleNamespace(data=types.SimpleNamespace(**d), train=types.SimpleNamespace(seed=0, stage="sft"))


def test_eval_dataset_alone_gives_an_empty_train_split():
    from llmpipe.models.tiny import build_tokenizer

    b = build_datasets(_cfg(), build_tokenizer("builtin:tiny"))
    assert len(b.eval) == 12 and len(b.train) == 0
    assert b.report.rows == {"train": 0, "eval": 12}


def test_no_dataset_at_all_is_still_an_error():
    from llmpipe.models.tiny import build_tokenizer

    with pytest.raises(DataError, match="data.dataset is empty"):
        build_datasets(_cfg(eval_dataset=[]), build_tokenizer("builtin:tiny"))
