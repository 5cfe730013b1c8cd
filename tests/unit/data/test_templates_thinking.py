"""Reasoning data: thought blocks kept, stripped or added the way LLaMA-Factory does, for the spans that
training uses, for the Jinja that inference uses, and through the supervised processor into the labels."""
from __future__ import annotations

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from llmpipe.data import processors as P
from llmpipe.data.templates import TEMPLATES, render_template
from llmpipe.data.templates.spans import sft_spans, strip_thought

SYS = {"role": "system", "content": "You are helpful."}
COT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nGreet back.\n</think>\n\nHello!"},
       {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nAdd.\n</think>\n\n4"}]
P1 = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
P2 = "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
R1_COT, R2_COT = "<think>\nGreet back.\n</think>\n\nHello!<|im_end|>\n", "<think>\nAdd.\n</think>\n\n4<|im_end|>\n"
EMPTY = "<think>\n\n</think>\n\n"


def spans(name, msgs, **kw):
    return sft_spans(TEMPLATES[name], [SYS] + msgs, **kw)


def test_sft_keeps_history_thoughts_by_default_and_for_null():
    want = [(P1, R1_COT), (P2, R2_COT)]
    assert spans("qwen3", COT) == want
    assert spans("qwen3", COT, enable_thinking=None) == want
    assert spans("qwen3", COT, mask_history=True, preserve_thinking=True) == want


def test_sft_mask_history_strips_earlier_thoughts():
    assert spans("qwen3", COT, mask_history=True) == [(P1, "Hello!<|im_end|>\n"), (P2, R2_COT)]


def test_sft_thinking_off_strips_all_and_puts_the_empty_thought_in_the_prompts():
    assert spans("qwen3", COT, enable_thinking=False) == [(P1 + EMPTY, "Hello!<|im_end|>\n"), (P2 + EMPTY, "4<|im_end|>\n")]


def test_null_adds_the_empty_thought_to_the_prompt_only_where_an_answer_has_none():
    mixed = [COT[0], {"role": "assistant", "content": "Hello!"}, COT[2], COT[3]]
    assert spans("qwen3", mixed, enable_thinking=None) == [(P1 + EMPTY, "Hello!<|im_end|>\n"), (P2, R2_COT)]
    assert spans("qwen3", mixed) == [(P1, EMPTY + "Hello!<|im_end|>\n"), (P2, R2_COT)]


def test_nothink_templates_pass_thoughts_through():
    assert spans("qwen3_nothink", COT) == [(P1, R1_COT), (P2, R2_COT)]
    assert spans("qwen3_nothink", COT, enable_thinking=False) == [(P1, R1_COT), (P2, R2_COT)]


def test_stripping_is_exact_string():
    spec = TEMPLATES["qwen3"]
    assert strip_thought(spec, "<think>Greet back.</think>Hello!") == "<think>Greet back.</think>Hello!"
    assert strip_thought(spec, "<think>\na\n</think>\n\nx<think>\nb\n</think>\n\ny") == "xy"
    assert strip_thought(spec, "<think>\nopen only") == "<think>\nopen only"


def _jinja(name, msgs, gen=False, **kw):
    return render_jinja_template([msgs], chat_template=render_template(name), add_generation_prompt=gen,
                                 bos_token="<s>", eos_token="</s>", **kw)[0][0]


def test_inference_view_drops_history_thoughts_unless_preserved():
    prompt = P1 + "Hello!<|im_end|>\n" + P2
    assert _jinja("qwen3", [SYS] + COT) == prompt + R2_COT
    assert _jinja("qwen3", [SYS] + COT, preserve_thinking=True) == P1 + R1_COT + P2 + R2_COT
    assert _jinja("qwen3", [SYS] + COT[:3], gen=True) == prompt
    assert _jinja("qwen3", [SYS] + COT[:3], gen=True, enable_thinking=False) == prompt + EMPTY
    assert _jinja("qwen3", [SYS] + COT, enable_thinking=False) == prompt + EMPTY + "4<|im_end|>\n"
    unmatched = [COT[0], {"role": "assistant", "content": "<think>Greet back.</think>Hello!"}, COT[2]]
    assert "<think>Greet back.</think>Hello!" in _jinja("qwen3", [SYS] + unmatched, gen=True)


@pytest.fixture(scope="module")
def tok():
    from llmpipe.models.tiny import build_tokenizer

    return build_tokenizer("builtin:tiny")


def trained(tok, enc):
    _, labels, _ = enc
    return tok.decode([t for t in labels if t != P.IGNORE_INDEX])


@pytest.mark.parametrize("mode,want", [
    (True, "<think>\nAdd.\n</think>\n\n4<|im_end|>\n"),   # the data's thought is trained
    (None, "<think>\nAdd.\n</think>\n\n4<|im_end|>\n"),
    (False, "4<|im_end|>\n"),                               # removed; the empty thought is prompt
])
def test_processor_trains_thoughts_as_configured(tok, mode, want):
    ex = {"messages": COT, "system": "You are helpful.", "tools": None}
    (enc,) = P.encode_supervised([ex], tok, template="qwen3", enable_thinking=mode, mask_history=True)
    assert trained(tok, enc) == want
    text = tok.decode(enc[0])
    assert ("Greet back." in text) is False  # mask_history: earlier thoughts are not in the input either
    assert text.endswith((EMPTY if mode is False else "") + want)


def test_processor_trains_the_empty_thought_when_thinking_is_on(tok):
    ex = {"messages": [COT[0], {"role": "assistant", "content": "Hello!"}], "system": None, "tools": None}
    (on,) = P.encode_supervised([ex], tok, template="qwen3", enable_thinking=True)
    (off,) = P.encode_supervised([ex], tok, template="qwen3", enable_thinking=False)
    assert trained(tok, on) == EMPTY + "Hello!<|im_end|>\n"
    assert trained(tok, off) == "Hello!<|im_end|>\n"
    assert tok.decode(on[0]) == tok.decode(off[0])   # same input, only what is trained differs


def test_efficient_eos_labels(tok):
    """falcon (efficient_eos): no EOS inside answers, one EOS at the end (input and label), and the first
    prompt token after an earlier answer learns to predict EOS."""
    conv = {"messages": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
                         {"role": "user", "content": "three"}, {"role": "assistant", "content": "four"}],
            "system": None, "tools": None}
    (enc,) = P.encode_supervised([conv], tok, template="falcon")
    ids, labels, _ = enc
    eos = tok.eos_token_id
    assert ids[-1] == eos and labels[-1] == eos and ids.count(eos) == 1
    first_p2 = len(tok("User: one\nFalcon:", add_special_tokens=False)["input_ids"]) + \
        len(tok("two\n", add_special_tokens=False)["input_ids"])
    assert labels[first_p2] == eos and ids[first_p2] != eos
    assert labels[0] == P.IGNORE_INDEX
    (mh,) = P.encode_supervised([conv], tok, template="falcon", mask_history=True)
    assert mh[1][0] == eos and mh[1][first_p2] == P.IGNORE_INDEX and mh[1][-1] == eos


def test_preserve_thinking_reaches_spans_jinja_and_processor(tok):
    ex = {"messages": COT, "system": "You are helpful.", "tools": None}
    (kept,) = P.encode_supervised([ex], tok, template="qwen3", mask_history=True, preserve_thinking=True)
    (dropped,) = P.encode_supervised([ex], tok, template="qwen3", mask_history=True)
    assert "Greet back." in tok.decode(kept[0]) and "Greet back." not in tok.decode(dropped[0])
    baked = render_jinja_template([[SYS] + COT], chat_template=render_template("qwen3", None, True, True),
                                  bos_token="<s>", eos_token="</s>")[0][0]
    assert baked == P1 + R1_COT + P2 + R2_COT
