"""Tool calls in inference: the OpenAI request takes ``tools``, assistant ``tool_calls`` and ``tool`` results;
the prompt writes them as the training data was written (data.tool_format, or the tokenizer's own template);
an answer that calls tools becomes OpenAI ``tool_calls`` (arguments as a JSON string, finish_reason
``tool_calls``)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llmpipe.infer import openai_api as api

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CALLED = [{"role": "user", "content": "Weather in Paris?"},
          {"role": "assistant", "content": None, "tool_calls": [
              {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
          {"role": "tool", "tool_call_id": "call_1", "content": "20 degrees"}]


def req(**body):
    return api.parse_chat_request(json.dumps({"messages": CALLED[:1], **body}).encode(), model_id="m",
                                  max_tokens_limit=64)


def test_request_with_tools_and_tool_turns():
    r = req(tools=[TOOL], messages=CALLED)
    assert json.loads(r.tools) == [TOOL["function"]] and r.read_calls
    assert [m["role"] for m in r.messages] == ["user", "function_call", "tool"]
    assert json.loads(r.messages[1]["content"]) == {"text": None, "calls": [{"name": "get_weather",
                                                                             "arguments": {"city": "Paris"}}]}
    assert not req(tools=[TOOL], tool_choice="none").read_calls and not req().read_calls and req().tools is None


@pytest.mark.parametrize("body,param", [
    ({"tools": [TOOL], "tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "retrieval"}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools"),
    ({"messages": [CALLED[0], {"role": "tool", "content": "x"}]}, "messages[1].role"),
    ({"messages": [CALLED[0], {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f",
                                                                                      "arguments": "{bad"}}]}]},
     "messages[1].tool_calls"),
    ({"messages": CALLED[:2]}, "messages"),
])
def test_bad_tool_requests_are_400(body, param):
    with pytest.raises(api.ApiError) as e:
        req(**body)
    assert e.value.status == 400 and e.value.param == param


def test_answer_with_calls_is_openai_tool_calls():
    done = SimpleNamespace(text="x", finish_reason="stop", prompt_tokens=3, completion_tokens=2)
    body = api.completion_body("c", "m", done, ("Checking. ", [{"name": "get_weather", "arguments": {"city": "Rome"}}]))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Checking. "
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Rome"}'}
    plain = api.completion_body("c", "m", done)["choices"][0]
    assert plain["message"] == {"role": "assistant", "content": "x"} and plain["finish_reason"] == "stop"


@pytest.fixture(scope="module")
def prompter_for(hydra_compose):
    from llmpipe.infer.engine import Prompter
    from llmpipe.models.tiny import build_tokenizer
    from llmpipe.pipeline.preflight import validate

    tok = build_tokenizer("builtin:tiny")

    def make(*overrides):
        validated, problems = validate(hydra_compose("data.dataset=demo_sft", *overrides))
        assert not problems, problems
        return Prompter(tok, validated.obj)
    return make


def test_prompt_and_parse_follow_the_tool_format(prompter_for):
    from llmpipe.data.tools import parse_tools

    p = prompter_for("data.template=qwen")
    r = req(tools=[TOOL], messages=CALLED)
    text = p.render(r.messages, None, r.tools)
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n") and json.dumps(TOOL) in text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>' in text
    assert text.endswith("<|im_start|>user\n<tool_response>\n20 degrees\n</tool_response><|im_end|>\n"
                         "<|im_start|>assistant\n")
    assert p.parse_calls('<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>') == \
        (None, [{"name": "f", "arguments": {"a": 1}}])
    assert p.parse_calls("Action: f\nAction Input: {}") is None  # not this run's format
    d = prompter_for("data.template=qwen", "data.tool_format=default")
    assert d.parse_calls("Action: f\nAction Input: {}") == (None, [{"name": "f", "arguments": {}}])
    assert "> Tool Name: get_weather" in d.render(CALLED[:1], None, parse_tools([TOOL]))


def test_the_own_template_must_write_the_tools(prompter_for):
    """data.template=null, data.tool_format=null: the tokenizer's own template gets the tools; builtin:tiny's
    has no place for them, so a request with tools is refused rather than answered without them."""
    from llmpipe.data.tools import parse_tools

    p = prompter_for("data.template=null")
    assert p.native_tools
    with pytest.raises(ValueError, match="does not write tool definitions"):
        p.render(CALLED[:1], None, parse_tools([TOOL]))
    assert p.render(CALLED[:1]).endswith("<|im_start|>assistant\n")  # without tools: fine
    assert p.parse_calls('[TOOL_CALLS] [{"name": "f", "arguments": {}}]') == (None, [{"name": "f", "arguments": {}}])
