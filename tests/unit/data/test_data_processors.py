"""Supervised masking and truncation, pretraining chunking, TRL preference formats, the loader."""
from __future__ import annotations

import types

import pytest

from llmpipe.data import processors as P
from llmpipe.data.errors import DataError
from llmpipe.data.formats import RowReport

IM_END = "<|im_end|>\n"


@pytest.fixture(scope="module")
def tok():
    from llmpipe.models.tiny import build_tokenizer

    return build_tokenizer("builtin:tiny")  # chatml + default system "You are a helpful assistant."


def ex(*turns, system=None):
    roles = ["user", "assistant"] * len(turns)
    return {"messages": [{"role": r, "content": c} for r, c in zip(roles, turns)], "system": system, "tools": None}


def labelled(tok, row):
    return tok.decode([t for t in row["labels"] if t != P.IGNORE_INDEX])


def test_prompt_tokens_are_masked(tok):
    (row,) = P.process_supervised([ex("Write the word in capital letters.\napple", "APPLE")], tok)
    assert len(row["input_ids"]) == len(row["labels"]) == len(row["attention_mask"])
    assert labelled(tok, row) == "APPLE" + IM_END
    n_prompt = row["labels"].index(next(t for t in row["labels"] if t != P.IGNORE_INDEX))
    assert tok.decode(row["input_ids"][:n_prompt]).endswith("<|im_start|>assistant\n")
    assert "You are a helpful assistant." in tok.decode(row["input_ids"][:n_prompt])
    assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]


def test_train_on_prompt(tok):
    (row,) = P.process_supervised([ex("q", "a")], tok, train_on_prompt=True)
    assert row["labels"] == row["input_ids"]


def test_every_assistant_turn_trained_unless_mask_history(tok):
    conv = ex("one plus one", "two", "two plus two", "four")
    (row,) = P.process_supervised([conv], tok)
    assert labelled(tok, row) == "two" + IM_END + "four" + IM_END
    (hist,) = P.process_supervised([conv], tok, mask_history=True)
    assert hist["input_ids"] == row["input_ids"]
    assert labelled(tok, hist) == "four" + IM_END


def test_system_and_default_system(tok):
    (a,) = P.process_supervised([ex("q", "a", system="Be brief.")], tok, default_system="Ignored.")
    (b,) = P.process_supervised([ex("q", "a")], tok, default_system="Default one.")
    assert "Be brief." in tok.decode(a["input_ids"]) and "Ignored." not in tok.decode(a["input_ids"])
    assert "Default one." in tok.decode(b["input_ids"]) and "helpful" not in tok.decode(b["input_ids"])


def test_infer_seqlen():
    assert P.infer_seqlen(100, 10, 64) == (54, 10)  # short response kept whole
    assert P.infer_seqlen(10, 100, 64) == (10, 54)  # short prompt kept whole
    assert P.infer_seqlen(100, 100, 64) == (32, 32)  # both long: proportional
    assert P.infer_seqlen(5, 5, 64) == (5, 5)


def test_cutoff_keeps_the_response(tok):
    long_prompt = " ".join(["apple river stone"] * 60)
    rep = RowReport("t")
    (row,) = P.process_supervised([ex(long_prompt, "stone river apple")], tok, cutoff_len=32, report=rep)
    assert len(row["input_ids"]) == 32
    assert labelled(tok, row) == "stone river apple" + IM_END
    n_prompt = sum(t == P.IGNORE_INDEX for t in row["labels"])
    assert tok.decode(row["input_ids"][:n_prompt]).endswith("<|im_start|>assistant\n")  # turn header kept
    assert rep.notes == {"prompt truncated to fit cutoff_len": 1}


def test_cutoff_drops_later_turns_and_reports_rows_that_cannot_fit(tok):
    rep = RowReport("t")
    conv = ex("q " * 20, "a " * 20, "q2", "a2")
    rows = P.process_supervised([conv, ex("hello", "world")], tok, cutoff_len=40, report=rep, indices=[7, 8])
    assert len(rows) == 2 and all(len(r["input_ids"]) <= 40 for r in rows)
    assert "a2" not in labelled(tok, rows[0]) and rep.notes["turns dropped to fit cutoff_len"] == 1
    rep = RowReport("t")
    rows = P.process_supervised([ex("a long question " * 10, "answer " * 10)], tok, cutoff_len=2, report=rep,
                                indices=[3])
    assert rows == [] and rep.examples == [{"row": 3, "reason": "no trainable token left within cutoff_len=2"}]


def test_pretraining_packing_and_truncation(tok):
    docs = [{"messages": [{"role": "user", "content": f"The zorblat number {i} is red."}]} for i in range(20)]
    total = sum(len(tok.encode(d["messages"][0]["content"] + tok.eos_token, add_special_tokens=False)) for d in docs)
    rep = RowReport("pt")
    packed = P.process_pretrain(docs, tok, cutoff_len=16, packing=True, report=rep)
    assert all(len(b["input_ids"]) == 16 for b in packed[:-1]) and 0 < len(packed[-1]["input_ids"]) <= 16
    assert sum(len(b["input_ids"]) for b in packed) == total  # nothing lost, eos between documents
    assert sum(b["input_ids"].count(tok.eos_token_id) for b in packed) == 20
    assert packed[0]["labels"] == packed[0]["input_ids"]
    single = P.process_pretrain(docs, tok, cutoff_len=4, packing=False)
    assert len(single) == 20 and all(len(b["input_ids"]) == 4 for b in single)
    whole = P.process_pretrain(docs[:1], tok, cutoff_len=None, packing=False)
    assert tok.decode(whole[0]["input_ids"]) == "The zorblat number 0 is red." + tok.eos_token


def test_pairwise_and_kto_are_trl_conversational():
    pair = P.process_pairwise([{**ex("q"), "chosen": "good", "rejected": "bad"}], default_system="S")
    assert pair == [{"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}],
                     "chosen": [{"role": "assistant", "content": "good"}],
                     "rejected": [{"role": "assistant", "content": "bad"}]}]
    kto = P.process_kto([{**ex("q", "a"), "label": False}])
    assert kto == [{"prompt": [{"role": "user", "content": "q"}],
                    "completion": [{"role": "assistant", "content": "a"}], "label": False}]


def _cfg(stage="sft", **data):
    d = dict(dataset=["demo_sft"], eval_dataset=None, dataset_dir="nowhere", template=None, cutoff_len=128,
             train_on_prompt=False, mask_history=False, max_samples=None, val_size=0.0, default_system=None,
             packing=None, mix_strategy="concat", interleave_probs=None, preprocessing_batch_size=50)
    d.update(data)
    return types.SimpleNamespace(data=types.SimpleNamespace(**d), train=types.SimpleNamespace(seed=3, stage=stage))


def test_build_datasets_sft_with_val_size(tok):
    from llmpipe.data.loader import build_datasets

    b = build_datasets(_cfg(max_samples=40, val_size=0.25), tok)
    assert (len(b.train), len(b.eval)) == (30, 10)
    assert sorted(b.train.column_names) == ["attention_mask", "input_ids", "labels"]
    again = build_datasets(_cfg(max_samples=40, val_size=0.25), tok)
    assert again.eval["input_ids"] == b.eval["input_ids"]  # seeded split
    assert b.report.identities["demo_sft"].startswith("sha256:")
    assert b.report.to_dict()["rows"] == {"train": 30, "eval": 10}
    b = build_datasets(_cfg(max_samples=40, val_size=8), tok)
    assert (len(b.train), len(b.eval)) == (32, 8)
    with pytest.raises(DataError, match="not both"):
        build_datasets(_cfg(max_samples=4, val_size=0.5, eval_dataset=["demo_sft_eval"]), tok)


def test_build_datasets_other_stages(tok):
    from llmpipe.data.loader import build_datasets

    b = build_datasets(_cfg("dpo", dataset=["demo_pref"], eval_dataset=["demo_pref_eval"], max_samples=8), tok)
    assert b.train.column_names == ["prompt", "chosen", "rejected"] and len(b.eval) == 8
    assert build_datasets(_cfg("kto", dataset=["demo_kto"], max_samples=8), tok).train.column_names == \
        ["prompt", "completion", "label"]
    pt = build_datasets(_cfg("pt", dataset=["demo_pt"], max_samples=30, cutoff_len=64), tok)
    assert all(len(x) == 64 for x in pt.train["input_ids"][:-1])
    mixed = build_datasets(_cfg(dataset=["demo_sft", "demo_sft_zh"], max_samples=10, mix_strategy="interleave_under",
                                interleave_probs=["0.5", "0.5"]), tok)
    assert 0 < len(mixed.train) <= 20
    with pytest.raises(DataError, match="train.stage"):
        build_datasets(_cfg("bogus"), tok)
