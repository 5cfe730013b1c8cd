"""DPO/KTO rows with tool turns are rendered as SFT renders them: tool definitions in the system prompt, calls and
results in the template's tool format through its own function/observation turns, and a chosen/rejected answer
given as a tool call (sharegpt's function_call tag) written as a call, not as its raw JSON. The conversation
TRL renders (prompt + chosen through the tokenizer's Jinja template) is byte-identical to the SFT spans of the
same conversation."""
from __future__ import annotations

import pytest
from native_chat_templates import family_tokenizer

from llmpipe.data import processors as P
from llmpipe.data import tools as T
from llmpipe.data.templates import TEMPLATES, apply_template
from llmpipe.data.templates.spans import sft_spans

TOOL = {"name": "get_weather", "description": "Get the weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
PARIS = T.canonical_call({"name": "get_weather", "arguments": {"city": "Paris"}})
ROME = T.canonical_call({"name": "get_weather", "arguments": {"city": "Rome"}})
HISTORY = [{"role": "user", "content": "Weather in Paris?"}, {"role": "function_call", "content": PARIS},
           {"role": "tool", "content": '{"t": 20}'}, {"role": "user", "content": "And Rome?"}]


def _tokenizer(name):
    tok = family_tokenizer("qwen2.5")
    tok.add_special_tokens({"additional_special_tokens": list(TEMPLATES[name].markers)})
    apply_template(tok, name)
    return tok


def _sft_text(tok, name, msgs, fmt) -> str:
    sft = P.chat_messages({"messages": msgs, "system": "Be brief.", "tools": T.parse_tools([TOOL])}, None, fmt, name)
    spans = sft_spans(TEMPLATES[name], sft, bos=tok.bos_token or "", eos=tok.eos_token)
    return "".join(p + r for p, r in spans) + (tok.eos_token if TEMPLATES[name].efficient_eos else "")


@pytest.mark.parametrize("name", ["qwen", "llama3", "mistral", "glm4"])
def test_preference_rows_with_tools_render_as_sft(name):
    fmt, tok = T.resolve_tool_format(None, name), _tokenizer(name)
    ex = {"messages": HISTORY, "system": "Be brief.", "tools": T.parse_tools([TOOL]), "chosen": ROME,
          "chosen_role": "function_call", "rejected": "No idea.", "rejected_role": "assistant"}
    (row,) = P.process_pairwise([ex], tool_format=fmt, template=name)
    assert row["chosen"] == [{"role": "function", "content": T.call_text(ROME, fmt)}]
    assert row["rejected"] == [{"role": "assistant", "content": "No idea."}]
    for key, last in (("chosen", {"role": "function_call", "content": ROME}),
                      ("rejected", {"role": "assistant", "content": "No idea."})):
        got = tok.apply_chat_template(row["prompt"] + row[key], tokenize=False)
        assert got == _sft_text(tok, name, HISTORY + [last], fmt), key
    # KTO: the completion is the conversation's last turn, a call here
    (kto,) = P.process_kto([{"messages": HISTORY + [{"role": "function_call", "content": ROME}], "system": "Be brief.",
                             "tools": T.parse_tools([TOOL]), "label": True}], tool_format=fmt, template=name)
    got = tok.apply_chat_template(kto["prompt"] + kto["completion"], tokenize=False)
    assert got == _sft_text(tok, name, HISTORY + [{"role": "function_call", "content": ROME}], fmt)


def test_a_call_the_format_cannot_write_is_a_bad_row_and_the_tag_is_read():
    from llmpipe.data.formats import convert_sharegpt
    from llmpipe.data.registry import DEFAULT_COLUMNS, DEFAULT_TAGS, DatasetSpec

    both = T.canonical_call([{"name": "get_weather", "arguments": {"city": "Paris"}},
                             {"name": "get_weather", "arguments": {"city": "Rome"}}])
    (row,) = P.process_pairwise([{"messages": HISTORY, "chosen": both, "chosen_role": "function_call",
                                  "rejected": "x", "rejected_role": "assistant"}], tool_format="glm4", template="glm4")
    assert "parallel" in row["_bad"]
    spec = DatasetSpec(name="pref_tools", source="", formatting="sharegpt", ranking=True,
                       columns={**DEFAULT_COLUMNS["sharegpt"], "chosen": "chosen", "rejected": "rejected"},
                       tags=dict(DEFAULT_TAGS["sharegpt"]))
    call = '{"name": "get_weather", "arguments": {"city": "Rome"}}'
    (ex,), rep = convert_sharegpt([{"conversations": [{"from": "human", "value": "Rome?"}],
                                    "chosen": {"from": "function_call", "value": call},
                                    "rejected": {"from": "gpt", "value": "No."}}], spec, "pairwise")
    assert (ex["chosen"], ex["chosen_role"], ex["rejected_role"]) == (T.canonical_call(call), "function_call",
                                                                      "assistant")
