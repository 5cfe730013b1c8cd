"""Function-calling data: tools columns, tool calls and results in sharegpt and OpenAI layouts, rendered in
the default and qwen tool formats; calls are trained on like answers, results are not."""
from __future__ import annotations

import json

import pytest

from llmpipe.data import tools as T
from llmpipe.data.errors import DataError
from llmpipe.data.loader import build_datasets
from llmpipe.data.options import DataOptions
from llmpipe.data.processors import IGNORE_INDEX

WEATHER = {"name": "get_weather", "description": "Current weather of a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                           "unit": {"type": "string", "enum": ["C", "F"]}},
                          "required": ["city"]}}
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
SHAREGPT = {"conversations": [{"from": "human", "value": "Weather in Paris?"},
                              {"from": "function_call", "value": json.dumps(CALL)},
                              {"from": "observation", "value": "18 degrees, sunny"},
                              {"from": "gpt", "value": "It is 18 degrees and sunny."}],
            "tools": json.dumps([WEATHER])}
OPENAI = {"messages": [{"role": "user", "content": "Weather in Paris?"},
                       {"role": "assistant", "content": None, "tool_calls": [
                           {"type": "function", "function": {"name": "get_weather",
                                                             "arguments": json.dumps({"city": "Paris"})}}]},
                       {"role": "tool", "content": "18 degrees, sunny"},
                       {"role": "assistant", "content": "It is 18 degrees and sunny."}],
          "tools": [{"type": "function", "function": WEATHER}]}


@pytest.fixture(scope="module")
def tok():
    from llmpipe.models.tiny import build_tokenizer

    return build_tokenizer("builtin:tiny")


def build(tmp_path, tok, rows, entry, **kw):
    (tmp_path / "fc.json").write_text(json.dumps(rows))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"fc": {"file_name": "fc.json", **entry}}))
    o = DataOptions(stage="sft", dataset=("fc",), dataset_dir=str(tmp_path), cutoff_len=1024, **kw)
    return build_datasets(o, tok)


def trained_and_prompt(tok, row):
    ids, labels = row["input_ids"], row["labels"]
    trained = tok.decode([i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX])
    prompt = tok.decode([i for i, lab in zip(ids, labels) if lab == IGNORE_INDEX])
    return trained, prompt


SG_ENTRY = {"formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools"}}
OA_ENTRY = {"formatting": "openai", "columns": {"messages": "messages", "tools": "tools"}}


@pytest.mark.parametrize("rows,entry", [([SHAREGPT], SG_ENTRY), ([OPENAI], OA_ENTRY)], ids=["sharegpt", "openai"])
def test_default_tool_format(tmp_path, tok, rows, entry):
    b = build(tmp_path, tok, rows, entry, template="chatml")
    trained, prompt = trained_and_prompt(tok, b.train[0])
    assert 'Action: get_weather\nAction Input: {"city": "Paris"}' in trained
    assert "It is 18 degrees and sunny." in trained
    assert "18 degrees, sunny" in prompt and "<|im_start|>tool\n18 degrees, sunny" in prompt  # result: not trained
    assert "> Tool Name: get_weather\nTool Description: Current weather of a city.\n" in prompt  # LF's default text
    assert "  - city (string, required): City name\n  - unit (string): , should be one of [C, F]\n" in prompt


def test_qwen_tool_format_is_the_default_for_the_qwen_template(tmp_path, tok):
    b = build(tmp_path, tok, [SHAREGPT], SG_ENTRY, template="qwen")
    trained, prompt = trained_and_prompt(tok, b.train[0])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in trained
    assert "<|im_start|>user\n<tool_response>\n18 degrees, sunny\n</tool_response><|im_end|>" in prompt
    # the template default kept (LLaMA-Factory's qwen default system)
    assert prompt.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools")
    assert json.dumps({"type": "function", "function": WEATHER}) in prompt
    explicit = build(tmp_path, tok, [SHAREGPT], SG_ENTRY, template="qwen", tool_format="default")
    assert "Action: get_weather" in trained_and_prompt(tok, explicit.train[0])[0]


def test_bad_tool_data_are_bad_rows(tmp_path, tok):
    bad_call = json.loads(json.dumps(SHAREGPT))
    bad_call["conversations"][1]["value"] = "get_weather(Paris)"
    no_name = dict(SHAREGPT, tools=json.dumps([{"description": "nameless"}]))
    broken_tools = dict(SHAREGPT, tools="[{broken")
    b = build(tmp_path, tok, [SHAREGPT, bad_call, no_name, broken_tools], SG_ENTRY, template="chatml")
    rep = b.report.datasets[0]
    assert rep.kept == 1
    assert [e["row"] for e in rep.examples] == [1, 2, 3]
    assert rep.examples[0]["reason"].startswith("message 1: function call is not valid JSON")
    assert rep.examples[1]["reason"] == "tool 0 has no name"
    assert rep.examples[2]["reason"].startswith("tools column is not valid JSON")


def test_tool_format_names():
    assert T.resolve_tool_format(None, "qwen") == "qwen" and T.resolve_tool_format(None, None) == "default"
    with pytest.raises(DataError, match="data.tool_format='glm9'"):
        T.resolve_tool_format("glm9", None)
    msgs = T.render_messages([{"role": "user", "content": "q"}], None, T.parse_tools([WEATHER]), "default")
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("You have access to the following tools:\n")


def test_a_call_the_format_cannot_write_is_a_bad_row(tmp_path, tok):
    """GLM-4 has no parallel calls: such a row is reported, the others are trained (LF refuses the dataset)."""
    parallel = json.loads(json.dumps(SHAREGPT))
    parallel["conversations"][1]["value"] = json.dumps([CALL, CALL])
    b = build(tmp_path, tok, [SHAREGPT, parallel], SG_ENTRY, template="chatml", tool_format="glm4")
    rep = b.report.datasets[0]
    assert rep.kept == 1 and [e["row"] for e in rep.examples] == [1]
    assert "parallel" in rep.examples[0]["reason"]
    trained, prompt = trained_and_prompt(tok, b.train[0])
    assert 'get_weather\n{"city": "Paris"}' in trained and "# 可用工具\n\n## get_weather" in prompt
