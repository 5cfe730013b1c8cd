"""The OpenAI chat-completions protocol as llmpipe serves it: request validation (every problem a 4xx
:class:`ApiError` with OpenAI's error shape) and the response / stream-chunk objects. No HTTP and no torch
here (llmpipe/serve.py does the HTTP, llmpipe/serve_transport.py the connections).

Accepted request fields: ``messages`` (required: an optional first ``system`` message, then ``user`` and
``assistant`` turns alternating, starting and ending with ``user``; content a string or a list of text
parts, and in user turns ``image_url`` parts for a vision-language model (each stands where it is, as an
``<image>``; the server checks and opens them: llmpipe.infer.mm_request); an assistant turn may carry ``tool_calls`` and a ``tool`` message, answering them, stands where a
user turn would), ``tools`` (OpenAI function definitions: the model sees them as the training data's tools
were written, and calls in its answer come back as ``message.tool_calls``, finish_reason ``tool_calls``),
``tool_choice`` (``auto``, or ``none``: the answer is not read for calls), ``model`` (must be the served id when given), ``max_tokens`` / ``max_completion_tokens``,
``temperature`` (0 = greedy), ``top_p``, ``stop``, ``stream``, ``stream_options.include_usage``, ``n`` (1),
``user``; ``presence_penalty`` / ``frequency_penalty`` only 0. Anything else is refused, not ignored.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

MAX_BODY = 1 << 20          # bytes of one request body
MAX_MESSAGES = 512
IMAGE = "<image>"           # what an image_url part becomes in the text (llmpipe.data.mm_tokenize.PLACEHOLDER)
KNOWN = {"messages", "model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "stream",
         "stream_options", "n", "user", "presence_penalty", "frequency_penalty", "tools", "tool_choice"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    messages: list[dict]                     # user/assistant/function_call/tool turns (system taken out)
    system: str | None
    stream: bool = False
    include_usage: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)   # GenParams.with_request(**overrides)
    tools: str | None = None                 # canonical JSON list of function definitions (llmpipe.data.tools)
    read_calls: bool = False                 # look for tool calls in the answer (tools given, tool_choice auto)
    images: list[str] = field(default_factory=list)   # the image_url parts' URLs, in order over the conversation


def _number(body: dict, key: str, lo: float, hi: float, *, lo_open: bool = False) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi or \
            (lo_open and value == lo):   # "not lo <= value <= hi" also refuses NaN
        where = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise ApiError(400, f"{key} must be a number in {where}, got {value!r}", key)
    return float(value)


def _image_part(part: dict, i: int) -> str:
    """The URL of an ``image_url`` content part (checked and opened later: llmpipe.infer.mm_request)."""
    where = f"messages[{i}].content"
    spec = part.get("image_url")
    if isinstance(spec, str):
        spec = {"url": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str) or not spec["url"] or \
            set(spec) - {"url", "detail"}:
        raise ApiError(400, f"{where}: an image_url part is {{type: image_url, image_url: {{url: ...}}}}", where)
    if spec.get("detail", "auto") != "auto":
        raise ApiError(400, f"{where}: image_url.detail={spec['detail']!r} is not supported (auto: the model's own "
                            "resolution limits apply)", where)
    return spec["url"]


def _content(m: dict, i: int, images: list[str] | None = None) -> str:
    """The text of message ``i``; ``images``: where a user turn's image_url URLs go (each becomes ``<image>``)."""
    content = m.get("content")
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                if images is None:
                    raise ApiError(400, f"messages[{i}].content: image_url parts are accepted in user messages only",
                                   f"messages[{i}].content")
                images.append(_image_part(part, i))
                parts.append(IMAGE)
                continue
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"messages[{i}].content: only text and image_url parts are supported",
                               f"messages[{i}].content")
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str):
        raise ApiError(400, f"messages[{i}].content must be a string", f"messages[{i}].content")
    return content


def _tool_calls(m: dict, i: int) -> dict:
    """An assistant message with ``tool_calls`` as llmpipe's function_call turn."""
    from llmpipe.data.tools import ToolDataError, canonical_call

    text = m.get("content")
    text = _content(m, i) if text is not None else None
    try:
        return {"role": "function_call", "content": canonical_call(m["tool_calls"], text)}
    except ToolDataError as e:
        raise ApiError(400, f"messages[{i}].tool_calls: {e}", f"messages[{i}].tool_calls") from None


def _messages(raw: Any, images: list[str]) -> tuple[list[dict], str | None]:
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "messages must be a non-empty list of {role, content} objects", "messages")
    if len(raw) > MAX_MESSAGES:
        raise ApiError(400, f"at most {MAX_MESSAGES} messages per request", "messages")
    system, turns = None, []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise ApiError(400, f"messages[{i}] must be an object with role and content", f"messages[{i}]")
        role = m.get("role")
        if role == "system" and i == 0:
            system = _content(m, i)
            continue
        expected = ("user", "tool") if len(turns) % 2 == 0 else ("assistant",)
        if role not in ("user", "assistant", "tool"):
            raise ApiError(400, f"messages[{i}].role={role!r}: allowed roles are system (first message only), "
                           "user, assistant and tool", f"messages[{i}].role")
        if role not in expected:
            raise ApiError(400, f"messages[{i}].role={role!r}: turns must alternate user (or tool), assistant, "
                           f"user, ... (expected {' or '.join(expected)})", f"messages[{i}].role")
        if role == "tool" and (not turns or turns[-1]["role"] != "function_call"):
            raise ApiError(400, f"messages[{i}]: a tool message must answer an assistant message with tool_calls",
                           f"messages[{i}].role")
        if role == "assistant" and m.get("tool_calls"):
            turns.append(_tool_calls(m, i))
        else:
            turns.append({"role": role, "content": _content(m, i, images if role == "user" else None)})
    if not turns or turns[-1]["role"] not in ("user", "tool"):
        raise ApiError(400, "the last message must come from the user (or be a tool result)", "messages")
    return turns, system


def _tools(body: dict) -> tuple[str | None, bool]:
    """(canonical tools JSON, whether to read calls from the answer)."""
    from llmpipe.data.tools import ToolDataError, parse_tools

    raw, choice = body.get("tools"), body.get("tool_choice", "auto")
    if choice not in ("auto", "none"):
        raise ApiError(400, f"tool_choice={choice!r} is not supported (auto or none)", "tool_choice")
    if raw is None:
        return None, False
    if not isinstance(raw, list) or not raw or not all(isinstance(t, dict) and t.get("type", "function") == "function"
                                                       for t in raw):  # OpenAI refuses an empty list too
        raise ApiError(400, "tools must be a list of {type: function, function: {name, description, parameters}}",
                       "tools")
    try:
        tools = parse_tools(raw)
    except ToolDataError as e:
        raise ApiError(400, f"tools: {e}", "tools") from None
    return tools, tools is not None and choice == "auto"


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_chat_request(raw: bytes, *, model_id: str, max_tokens_limit: int) -> ChatRequest:
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, f"the request body is not valid JSON ({e})") from None
    except RecursionError:   # e.g. thousands of nested brackets: json gives up; so do we, with a 400
        raise ApiError(400, "the request body is not valid JSON (nested too deeply)") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise ApiError(400, f"unrecognized or unsupported request argument(s): {', '.join(unknown)}", unknown[0])
    model = body.get("model")
    if model is not None and model != model_id:
        raise ApiError(404, f"the model {model!r} does not exist; this server serves {model_id!r}", "model",
                       "model_not_found")
    images: list[str] = []
    messages, system = _messages(body.get("messages"), images)
    over: dict[str, Any] = {}
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_tokens_limit:
            raise ApiError(400, f"{key} must be an integer in [1, {max_tokens_limit}], got {value!r}", key)
        over["max_new_tokens"] = value
    over["temperature"] = _number(body, "temperature", 0.0, 2.0)
    over["top_p"] = _number(body, "top_p", 0.0, 1.0, lo_open=True)
    for key in ("presence_penalty", "frequency_penalty"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or value != 0):   # false is not 0 here
            raise ApiError(400, f"{key} is not supported (only 0)", key)
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise ApiError(400, "n must be 1: one answer per request", "n")
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
            raise ApiError(400, "stop must be a non-empty string or a list of at most 4 of them", "stop")
        if stop:   # [] means no stop sequence, as in OpenAI's API
            over["stop"] = stop
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false", "stream")
    opts = body.get("stream_options")
    opts = {} if opts is None else opts
    if not isinstance(opts, dict) or set(opts) - {"include_usage"} or \
            not isinstance(opts.get("include_usage", False), bool):
        raise ApiError(400, "stream_options supports include_usage (true or false) only", "stream_options")
    tools, read_calls = _tools(body)
    return ChatRequest(messages, system, stream, opts.get("include_usage", False),
                       {k: v for k, v in over.items() if v is not None}, tools, read_calls, images)


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(c) -> dict:
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens}


def tool_calls(calls: list[dict]) -> list[dict]:
    """OpenAI ``tool_calls`` entries (arguments as a JSON string) for parsed calls."""
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
            for c in calls]


def answer_message(text: str, finish_reason: str, parsed=None) -> tuple[dict, str]:
    """(message, finish_reason) of an answer; ``parsed``: (content, calls) when the answer calls tools."""
    if not parsed:
        return {"role": "assistant", "content": text}, finish_reason
    content, calls = parsed
    return {"role": "assistant", "content": content, "tool_calls": tool_calls(calls)}, "tool_calls"


def completion_body(cid: str, model: str, c, parsed=None) -> dict:
    message, finish = answer_message(c.text, c.finish_reason, parsed)
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage(c)}


def chunk_body(cid: str, model: str, delta: dict, finish: str | None = None, usage_of=None) -> dict:
    body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if usage_of is not None:
        body["choices"], body["usage"] = [], usage(usage_of)
    return body


def models_body(model: str, created: int) -> dict:
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "llmpipe"}]}
