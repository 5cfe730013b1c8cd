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
    assert notes == {"prompt alone fills cutoff_len (TRL drops the example)": len(rows)}
    fulls = sorted(_length(tok, r["prompt"] + r["completion"]) for r in rows)
    cut = prompts[-1] + 1   # every prompt fits, the longer conversations are cut
    want = sum(n > cut for n in fulls)
    notes, _ = _notes(tok, "kto", "demo_kto", cut)
    assert notes == ({"example longer than cutoff_len (TRL cuts its end)": want} if want else {})
