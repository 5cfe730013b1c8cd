"""The loader's data parameters: val_size (fraction or count), max_samples, mixing strategies with
probabilities, eval datasets (each on its own), template fit, default_system, tokenized_path, streaming."""
from __future__ import annotations

import types
from collections import Counter

import pytest

from llmpipe.data import published
from llmpipe.data.errors import DataError
from llmpipe.data.loader import build_datasets


@pytest.fixture(scope="module")
def tok():
    from llmpipe.models.tiny import build_tokenizer

    return build_tokenizer("builtin:tiny")


def cfg(**data):
    d = dict(dataset=["demo_sft"], max_samples=20, cutoff_len=128)
    stage = data.pop("stage", "sft")
    d.update(data)
    return types.SimpleNamespace(data=types.SimpleNamespace(**d), train=types.SimpleNamespace(seed=0, stage=stage))


def rows(ds):
    return Counter(tuple(x) for x in ds["input_ids"])


def test_val_size_fraction_and_count_and_max_samples(tok):
    b = build_datasets(cfg(max_samples=40, val_size=0.25), tok)
    assert (len(b.train), len(b.eval)) == (30, 10) and b.report.rows == {"train": 30, "eval": 10}
    b = build_datasets(cfg(max_samples=40, val_size=7), tok)
    assert (len(b.train), len(b.eval)) == (33, 7)
    for bad in (40, 0.001, 2.5):
        with pytest.raises(DataError, match="data.val_size"):
            build_datasets(cfg(max_samples=40, val_size=bad), tok)
    assert len(build_datasets(cfg(max_samples=None), tok).train) == 600


def test_mix_strategies(tok):
    two = ["demo_sft", "demo_sft_zh"]
    concat = build_datasets(cfg(dataset=two), tok).train
    assert len(concat) == 40
    under = build_datasets(cfg(dataset=two, mix_strategy="interleave_under", interleave_probs=["0.5", "0.5"]), tok).train
    assert len(under) < 40 and rows(under) <= rows(concat) + rows(concat)
    over = build_datasets(cfg(dataset=two, mix_strategy="interleave_over", interleave_probs=["0.2", "0.8"]), tok).train
    assert len(over) > 40 and set(rows(over)) == set(rows(concat))  # every example, some repeated
    once = build_datasets(cfg(dataset=two, mix_strategy="interleave_once", interleave_probs=["0.2", "0.8"]), tok).train
    assert rows(once) == rows(concat) and once["input_ids"] != concat["input_ids"]  # each once, interleaved
    skew = build_datasets(cfg(dataset=two, max_samples=200, mix_strategy="interleave_under",
                              interleave_probs=["0.9", "0.1"]), tok).train
    zh = set(rows(build_datasets(cfg(dataset=["demo_sft_zh"], max_samples=200), tok).train))
    share = sum(tuple(x) in zh for x in skew["input_ids"]) / len(skew)
    assert 0.03 < share < 0.25  # the probabilities are honoured


def test_eval_datasets_concatenated_and_each_kept(tok):
    b = build_datasets(cfg(eval_dataset=["demo_sft_eval", "demo_sft_zh_eval"], eval_on_each_dataset=True,
                           mix_strategy="interleave_over", interleave_probs=["1.0"]), tok)
    assert len(b.eval) == 40  # never interleaved: each evaluation example exactly once
    assert sorted(b.eval_each) == ["demo_sft_eval", "demo_sft_zh_eval"]
    assert rows(b.eval) == rows(b.eval_each["demo_sft_eval"]) + rows(b.eval_each["demo_sft_zh_eval"])
    assert [r.split for r in b.report.datasets] == ["train", "eval", "eval"]


def test_template_must_fit_the_tokenizer_and_default_system(tok):
    with pytest.raises(DataError, match=r"data.template='llama3' uses control strings that are not single tokens"):
        build_datasets(cfg(template="llama3"), tok)
    b = build_datasets(cfg(template="chatml", default_system="Answer in one word."), tok)
    assert tok.decode(b.train[0]["input_ids"]).startswith("<|im_start|>system\nAnswer in one word.<|im_end|>")
    b = build_datasets(cfg(template=None, default_system="Answer in one word."), tok)  # the tokenizer's own
    assert "Answer in one word." in tok.decode(b.train[0]["input_ids"])


def test_tokenized_path_is_reused_only_for_the_same_load(tmp_path, tok):
    b = build_datasets(cfg(), tok)
    path = str(tmp_path / "tok")
    assert published.tokenized_state(path, "fp1", False) == "write"
    published.write_tokenized(b, path, "fp1", b.report.to_dict())
    assert published.tokenized_state(path, "fp1", False) == "load"
    again, report = published.read_tokenized(path)
    assert again.train["input_ids"] == b.train["input_ids"] and report["rows"] == {"train": 20}
    with pytest.raises(DataError, match="holds data tokenized with other settings.*overwrite_cache=true"):
        published.tokenized_state(path, "fp2", False)
    assert published.tokenized_state(path, "fp2", True) == "write"
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "x").write_text("")
    with pytest.raises(DataError, match="was not written by llmpipe"):
        published.tokenized_state(str(tmp_path / "theirs"), "fp1", True)


def test_streaming_prepares_a_spec_and_streams(tmp_path, tok):
    from llmpipe.data.options import DataOptions
    from llmpipe.data.streaming import open_stream, prepare_stream

    import json

    opts = DataOptions.from_cfg(cfg(max_samples=None, streaming=True, val_size=8, neat_packing=True,
                                    buffer_size=32, preprocessing_batch_size=16))
    tok.save_pretrained(tmp_path / "tokenizer")
    spec, ev, report = prepare_stream(opts, tok, tmp_path / "tokenizer")
    assert report.datasets[0].kept == 200 and spec["skip"] == 8 and report.packing["eval"]["examples"] == 8
    (tmp_path / "stream.json").write_text(json.dumps(spec))
    stream = open_stream(tmp_path)
    first = list(stream.take(5))
    assert all(set(r) == {"input_ids", "labels", "attention_mask", "position_ids"} for r in first)
    assert all(len(r["input_ids"]) <= 128 for r in first) and any(r["position_ids"].count(0) > 1 for r in first)
    assert "position_ids" in stream.features  # the collator can tell neat-packed rows from the features
    (tmp_path / "extra.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    spec["datasets"][0]["source"] = str(tmp_path / "extra.jsonl")
    (tmp_path / "stream.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match="changed since the load stage read it"):
        open_stream(tmp_path)
