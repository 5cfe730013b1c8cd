"""DPO, RM and KTO rows are tokenized by TRL, which cuts them to data.cutoff_len silently: the load stage
counts them in the data report as SFT counts its truncation (before, only SFT reported it)."""
from __future__ import annotations

import types

import pytest

from llmpipe.data.loader import build_datasets


@pytest.fixture(scope="module")
def tok():
    from llmpipe.models.tiny import build_tokenizer

    return build_tokenizer("builtin:tiny")


def _notes(tok, stage, dataset, cutoff_len):
    d = types.SimpleNamespace(dataset=[dataset], max_samples=40, cutoff_len=cutoff_len)
    b = build_datasets(types.SimpleNamespace(data=d, train=types.SimpleNamespace(seed=0, stage=stage)), tok)
    (rep,) = b.report.datasets
    return dict(rep.notes), b.train


def _length(tok, msgs, gen=False):
    return len(tok(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen), add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("stage", ["dpo", "rm"])
def test_pairs_longer_than_cutoff_are_counted(tok, stage):
    notes, rows = _notes(tok, stage, "demo_pref", 4096)
    assert notes == {}
    longest = sorted(max(_length(tok, r["prompt"] + r["chosen"]), _length(tok, r["prompt"] + r["rejected"]))
                     for r in rows)
    cut = longest[len(longest) // 2]
    want = sum(n > cut for n in longest)
    assert 0 < want < len(rows)
    notes, _ = _notes(tok, stage, "demo_pref", cut)
    assert notes == {"pair longer than cutoff_len (TRL cuts its end)": want}


def test_kto_rows_cut_or_dropped_are_counted(tok):
    notes, rows = _notes(tok, "kto", "demo_kto", 4096)
    assert notes == {}
    prompts = sorted(_length(tok, r["prompt"], True) for r in rows)
    cut = prompts[0]   # the shortest prompt fills it: every row is dropped by TRL
    notes, _ = _notes(tok, "kto", "demo_kto", cut)
    good = sum(rows["label"])
    assert notes == {"prompt alone fills cutoff_len (TRL drops the desirable example)": good,
                     "prompt alone fills cutoff_len (TRL drops the undesirable example)": len(rows) - good}
    fulls = sorted(_length(tok, r["prompt"] + r["completion"]) for r in rows)
    cut = prompts[-1] + 1   # every prompt fits, the longer conversations are cut
    want = sum(n > cut for n in fulls)
    notes, _ = _notes(tok, "kto", "demo_kto", cut)
    assert notes == ({"example longer than cutoff_len (TRL cuts its end)": want} if want else {})


def test_balanced_kto_data_made_unequal_by_the_drops_is_said(tok):
    from llmpipe.data.loader import pref_truncation

    def row(label, words):
        return {"prompt": [{"role": "user", "content": "word " * words}],
                "completion": [{"role": "assistant", "content": "ok"}], "label": label}

    rows = [row(True, 200), row(True, 3), row(False, 3), row(False, 3)]   # 2 / 2: balanced as given
    notes = pref_truncation(rows, tok, 64)
    assert notes["prompt alone fills cutoff_len (TRL drops the desirable example)"] == 1
    assert [k for k in notes if k.startswith("balanced data made unequal by TRL's drops: 1 desirable / 2 undesirable")]
    assert not [k for k in pref_truncation(rows[1:], tok, 64) if k.startswith("balanced")]   # unequal as given
