"""data.template=null: the tokenizer's own chat template renders the rows, and the label mask comes from the
template (its generation markers, else prefix rendering), never from a guess. Each rendering is compared
with the tokenizer's own ``apply_chat_template`` (text and token ids), for chat templates shaped like the
Qwen2.5, Qwen3, Llama-3.1, Mistral and Gemma ones (tests/unit/data/native_chat_templates.py)."""
from __future__ import annotations

import json

import pytest
from native_chat_templates import FAMILIES, family_tokenizer

from llmpipe.data.loader import build_datasets
from llmpipe.data.native_template import native_messages
from llmpipe.data.options import DataOptions
from llmpipe.data.processors import IGNORE_INDEX, encode_native
from llmpipe.data.tools import canonical_call, parse_tools

TOOL = {"name": "get_weather", "description": "Get the weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                       "required": ["city"]}}


def _ex(*turns, system=None, tools=None):
    roles = ["user", "assistant"]
    msgs = []
    for i, t in enumerate(turns):
        if isinstance(t, tuple):
            msgs.append({"role": t[0], "content": t[1]})
        else:
            msgs.append({"role": roles[i % 2], "content": t})
    return {"system": system, "tools": parse_tools(tools) if tools else None, "messages": msgs}


MULTI = _ex("Hi", "Hello!", "2+2?", "4", system="You are helpful.")
NOSYS = _ex("Hi", "Hello!", "2+2?", "4")
THINK = _ex("Hi", "<think>\nGreet.\n</think>\n\nHello!", "2+2?", "<think>\nAdd.\n</think>\n\n4")
TOOLS = _ex("Weather in Paris?", ("function_call", canonical_call({"name": "get_weather", "arguments": {"city": "Paris"}})),
            ("tool", '{"temperature": 20}'), ("assistant", "It is 20 degrees."), tools=[TOOL])
TOOLS_SYS = dict(TOOLS, system="You are helpful.")
CASES = {"multi": MULTI, "nosys": NOSYS, "think": THINK, "tools": TOOLS, "tools_sys": TOOLS_SYS}

# what is trained (labels != -100), per family and case; "!" + text: the row is refused with that reason
CALL_QWEN = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
REWRITES = "!rewrites earlier turns"
EXPECT = {
    "qwen2.5": {"multi": "Hello!<|im_end|>4<|im_end|>", "think": "<think>\nGreet.\n</think>\n\nHello!<|im_end|>"
                "<think>\nAdd.\n</think>\n\n4<|im_end|>", "tools": "\n" + CALL_QWEN + "It is 20 degrees.<|im_end|>"},
    "qwen2.5-plain": {"multi": "Hello!<|im_end|>\n4<|im_end|>\n",
                      "tools": CALL_QWEN + "\nIt is 20 degrees.<|im_end|>\n"},
    "qwen3": {"multi": REWRITES, "nosys": REWRITES, "think": REWRITES, "tools": REWRITES, "tools_sys": REWRITES},
    "llama3.1": {"multi": "Hello!<|eot_id|>4<|eot_id|>",
                 "tools": '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>It is 20 degrees.<|eot_id|>'},
    "mistral": {"multi": REWRITES, "nosys": " Hello!</s> 4</s>", "tools_sys": '[TOOL_CALLS] [{"name": "get_weather", '
                '"arguments": {"city": "Paris"}}]</s> It is 20 degrees.</s>'},
    "gemma": {"multi": "Hello!<end_of_turn>\n4<end_of_turn>\n", "tools": "!Conversation roles must alternate",
              "tools_sys": "!Conversation roles must alternate"},
}
# with mask_history only the last answer is trained, and a template that rewrites history is fine
LAST = {"qwen2.5": "4<|im_end|>", "qwen2.5-plain": "4<|im_end|>\n", "qwen3": "<think>\n\n</think>\n\n4<|im_end|>\n",
        "llama3.1": "4<|eot_id|>", "mistral": " 4</s>", "gemma": "4<end_of_turn>\n"}
END = {"qwen2.5": "<|im_end|>", "qwen2.5-plain": "<|im_end|>", "qwen3": "<|im_end|>", "llama3.1": "<|eot_id|>",
       "mistral": "</s>", "gemma": "<end_of_turn>"}


@pytest.fixture(scope="module")
def toks():
    return {f: family_tokenizer(f) for f in FAMILIES}


def _trained(tok, ids, labels) -> str:
    return tok.decode([i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX])


def _own(tok, ex) -> str:
    msgs, tools = native_messages(ex, None)
    return tok.apply_chat_template(msgs, tools=tools, tokenize=False)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mask_history", [False, True])
def test_rendering_is_the_tokenizers_own(toks, family, case, mask_history):
    tok, ex = toks[family], CASES[case]
    out = encode_native([ex], tok, mask_history=mask_history)[0]
    want = EXPECT[family].get(case)
    if isinstance(out, str):  # refused: only where a reason is expected
        assert want and want.startswith("!") and (want[1:] in out or (mask_history and "refused" in out)), out
        return
    ids, labels, _ = out
    text = _own(tok, ex)
    assert tok.decode(ids) == text  # llmpipe's rendering is the tokenizer's own, to the character ...
    assert ids == tok(text, add_special_tokens=False)["input_ids"]  # ... and to the token
    trained = _trained(tok, ids, labels)
    if mask_history:  # one answer trained: the last, as the template writes it
        assert trained.count(END[family]) == 1 and ex["messages"][-1]["content"].split("\n")[-1] in trained
        if case in ("multi", "nosys"):
            assert trained == LAST[family]
    elif want is not None:
        assert not want.startswith("!"), f"expected a refusal, got {trained!r}"
        assert trained == want
    # every trained token is inside an answer the conversation gave: nothing of the prompts
    for prompt_text in ("Hi", "2+2?", "You are helpful.", "Weather in Paris?", "temperature"):
        assert prompt_text not in trained


def test_generation_markers_give_transformers_own_mask(toks):
    tok = toks["qwen2.5"]
    for ex in (MULTI, TOOLS):
        ids, labels, _ = encode_native([ex], tok)[0]
        msgs, tools = native_messages(ex, None)
        enc = tok.apply_chat_template(msgs, tools=tools, return_dict=True, return_assistant_tokens_mask=True)
        assert ids == list(enc["input_ids"])
        assert [lab != IGNORE_INDEX for lab in labels] == [bool(m) for m in enc["assistant_masks"]]


def test_refusals_say_why(toks):
    reason = encode_native([MULTI], toks["qwen3"])[0]
    assert "rewrites earlier turns" in reason and "data.mask_history=true" in reason
    assert "roles must alternate" in encode_native([TOOLS], toks["gemma"])[0]
    calls = json.loads(TOOLS["messages"][1]["content"])
    two = dict(TOOLS, messages=[TOOLS["messages"][0], {"role": "function_call", "content": json.dumps(
        {"text": None, "calls": calls["calls"] * 2})}] + TOOLS["messages"][2:])
    assert "only supports single tool-calls" in encode_native([two], toks["llama3.1"])[0]


def test_a_template_without_tools_does_not_drop_them():
    """The built-in tiny model's own template (chatml) has no place for tool definitions: the row is refused
    instead of trained without them."""
    from llmpipe.models.tiny import build_tokenizer

    tok = build_tokenizer("builtin:tiny")
    reason = encode_native([TOOLS], tok)[0]
    assert "does not write the tool definitions" in reason and "data.tool_format" in reason
    ids, labels, _ = encode_native([TOOLS], tok, tool_format="qwen", native="text")[0]  # written as text: trained
    assert "<tool_call>" in _trained(tok, ids, labels)


def test_train_on_prompt_and_cutoff(toks):
    tok = toks["qwen2.5-plain"]
    ids, labels, _ = encode_native([MULTI], tok, train_on_prompt=True)[0]
    assert labels == ids
    ids, labels, notes = encode_native([MULTI], tok, cutoff_len=40)[0]
    assert len(ids) <= 40 and notes and _trained(tok, ids, labels)


def _build(tmp_path, tok, rows, **kw):
    (tmp_path / "d.json").write_text(json.dumps(rows))
    entry = {"file_name": "d.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": entry}))
    o = DataOptions(stage="sft", dataset=("d",), dataset_dir=str(tmp_path), cutoff_len=1024, template=None, **kw)
    return build_datasets(o, tok)


def _sharegpt(ex):
    tag = {"user": "human", "assistant": "gpt", "function_call": "function_call", "tool": "observation"}
    row = {"conversations": [{"from": tag[m["role"]], "value": m["content"]} for m in ex["messages"]]}
    if ex.get("system"):
        row["conversations"].insert(0, {"from": "system", "value": ex["system"]})
    if ex.get("tools"):
        row["tools"] = ex["tools"]
    return row


def test_loader_uses_the_tokenizers_own_template(tmp_path, toks):
    """Through build_datasets: rows the template cannot mask soundly are bad rows with the reason; the rest
    are the tokenizer's own rendering."""
    tok = toks["qwen3"]
    b = _build(tmp_path, tok, [_sharegpt(MULTI), _sharegpt(_ex("Hi", "Hello!"))])
    rep = b.report.datasets[0]
    assert rep.kept == 1 and "rewrites earlier turns" in rep.examples[0]["reason"]
    row = b.train[0]
    assert tok.decode(row["input_ids"]) == _own(tok, _ex("Hi", "Hello!"))
    b = _build(tmp_path, tok, [_sharegpt(MULTI), _sharegpt(TOOLS)], mask_history=True)
    assert b.report.datasets[0].kept == 2
    texts = sorted(tok.decode(r["input_ids"]) for r in b.train)
    assert texts == sorted([_own(tok, MULTI), _own(tok, TOOLS)])


def test_loader_with_a_tool_format_writes_tools_as_text(tmp_path, toks):
    tok = toks["gemma"]  # its template has no tool role: with data.tool_format the tools are plain turns
    b = _build(tmp_path, tok, [_sharegpt(_ex("Weather in Paris?", ("function_call", TOOLS["messages"][1]["content"]),
                                             ("user", "20 degrees"), ("assistant", "It is 20 degrees."), tools=[TOOL]))],
               tool_format="default")
    row = b.train[0]
    text = tok.decode(row["input_ids"])
    assert text.startswith("<bos><start_of_turn>user\nYou have access to the following tools:\n> Tool Name: get_weather")
    assert 'Action: get_weather\nAction Input: {"city": "Paris"}<end_of_turn>' in _trained(tok, row["input_ids"],
                                                                                          row["labels"])
