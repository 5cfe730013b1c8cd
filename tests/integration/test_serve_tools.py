"""Tool calls through the OpenAI-compatible server, with the official ``openai`` client: ``tools`` in the
request reach the prompt in the run's tool format, and an answer that calls a tool comes back as
``message.tool_calls`` (streamed too). The server here is in-process with a stand-in generator that answers
a fixed text (a tiny model does not call tools by itself); the prompt rendering and the reading of the
answer are the real ones (llmpipe.infer.engine.Prompter)."""
from __future__ import annotations

import json

import pytest
from serve_support import compose_serve, stub_server

openai = pytest.importorskip("openai")

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}
CALL = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
USER = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def server():
    from llmpipe.infer.engine import Prompter
    from llmpipe.models.tiny import build_tokenizer

    overrides = ["data.template=qwen"]
    prompter = Prompter(build_tokenizer("builtin:tiny"), compose_serve(overrides))
    with stub_server(overrides, answer=CALL, prompter=prompter) as s:
        yield s


def ask(s, **kw):
    c = openai.OpenAI(base_url=s.url + "/v1", api_key="none", max_retries=0, timeout=60)
    return c.chat.completions.create(model="standin", **kw)


def test_tools_in_the_request_and_tool_calls_back(server):
    r = ask(server, messages=USER, tools=[TOOL])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check.\n"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    prompt = server.backend.prompts[-1]
    assert prompt.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n")  # the qwen template's default system + tools
    assert json.dumps(TOOL) in prompt

    # the client sends the call and its result back: both are written into the next prompt
    follow = USER + [choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "20 degrees"}]
    ask(server, messages=follow, tools=[TOOL])
    prompt = server.backend.prompts[-1]
    assert ('<|im_start|>assistant\nLet me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": '
            '"Paris"}}\n</tool_call><|im_end|>') in prompt
    assert prompt.endswith("<tool_response>\n20 degrees\n</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_streamed_tool_calls(server):
    chunks = list(ask(server, messages=USER, tools=[TOOL], stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [t for d in deltas for t in (d.tool_calls or [])]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert "".join(d.content or "" for d in deltas) == "Let me check.\n"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_without_tools_or_with_tool_choice_none_the_text_is_the_answer(server):
    for kw in ({}, {"tools": [TOOL], "tool_choice": "none"}):
        choice = ask(server, messages=USER, **kw).choices[0]
        assert choice.message.content == CALL and not choice.message.tool_calls and choice.finish_reason == "stop"
    streamed = list(ask(server, messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == CALL
