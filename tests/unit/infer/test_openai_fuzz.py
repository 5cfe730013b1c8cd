"""Property-based fuzzing of the OpenAI request schema (Hypothesis): random request bodies — valid requests,
every field with a value of the wrong type or out of range, unknown fields, unicode, huge and non-finite
numbers, nested junk, JSON that is not an object, bytes that are not JSON or not UTF-8, deep nesting — into
``openai_api.parse_chat_request`` either give a ChatRequest that keeps the documented promises or raise an
ApiError with a 4xx status and OpenAI's error shape. Nothing else. ``request_bodies`` is also the body
strategy of tests/integration/test_serve_fuzz.py (through the HTTP server)."""
from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmpipe.infer import openai_api as api

MODEL, LIMIT = "demo", 64

_text = st.text(max_size=20)    # any unicode, surrogates excluded (JSON text must encode to UTF-8)
_numbers = st.one_of(st.integers(-3, 70), st.integers(-2 ** 80, 2 ** 80), st.floats(allow_nan=False),
                     st.sampled_from([0, 1, 0.0, 1.0, 2.0, 1e-300, 1e300, 10 ** 400]))
_scalars = st.one_of(st.none(), st.booleans(), _numbers, _text)
junk = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                    max_leaves=12)


@st.composite
def _message(draw):
    role = draw(st.sampled_from(["user", "assistant", "system", "tool", "", "USER"]) | junk)
    content = draw(st.one_of(_text, st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]),
                                                                    "text": _text | junk}), max_size=3), junk))
    message = {"role": role, "content": content}
    if draw(st.integers(0, 5)) == 0:
        message[draw(_text)] = draw(junk)
    return message if draw(st.integers(0, 9)) else draw(junk)


def _conversation(n_turns: int) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(n_turns)]


GOOD = {   # a right value for every field ...
    "messages": st.integers(1, 5).filter(lambda n: n % 2).map(_conversation),
    "model": st.just(MODEL),
    "max_tokens": st.integers(1, LIMIT),
    "max_completion_tokens": st.integers(1, LIMIT),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1, exclude_min=True),
    "stop": _text | st.lists(_text, max_size=4),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "n": st.just(1),
    "user": _text,
    "presence_penalty": st.sampled_from([0, 0.0]),
    "frequency_penalty": st.just(0),
}
BAD = {   # ... and wrong ones (junk fits every field)
    "messages": st.lists(_message(), max_size=5),
    "model": st.just("gpt-4"),
    "max_tokens": _numbers,
    "temperature": _numbers,
    "top_p": _numbers,
    "stop": st.lists(_text, min_size=5, max_size=6),
    "n": st.just(2),
    "presence_penalty": st.just(0.5),
}


@st.composite
def request_objects(draw) -> dict:
    """A request object: some of the known fields, each mostly right, sometimes wrong; sometimes an unknown one."""
    keys = draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=6, unique=True))
    body = {}
    for key in (["messages"] if draw(st.integers(0, 4)) else []) + keys:
        wrong = draw(st.integers(0, 5)) == 0
        body[key] = draw(st.one_of(BAD.get(key, junk), junk) if wrong else GOOD[key])
    if draw(st.integers(0, 7)) == 0:
        body[draw(_text)] = draw(junk)
    return body


def _encode(value, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")


request_bodies = st.one_of(
    st.builds(_encode, request_objects(), st.booleans()),                       # mostly objects
    st.builds(_encode, junk, st.booleans()),                                    # any JSON at all
    st.binary(max_size=64),                                                     # not JSON, maybe not UTF-8
    st.sampled_from([b"", b"{", b'{"messages": NaN}', b'{"temperature": Infinity}', b"\xff\xfe{}",
                     b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1' + b"0" * 5000 + b"}",
                     b"[" * 100_000, b'{"a":' * 3000 + b"1" + b"}" * 3000, '{"messages": "\u00e9"}'.encode("latin-1")]),
)


def check(raw: bytes) -> api.ChatRequest | api.ApiError:
    """parse_chat_request(raw): a request keeping the promises, or a 4xx ApiError in OpenAI's shape."""
    try:
        req = api.parse_chat_request(raw, model_id=MODEL, max_tokens_limit=LIMIT)
    except api.ApiError as e:
        assert 400 <= e.status < 500 and e.status != 429, e.status
        error = json.loads(json.dumps(e.body()))["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        return e
    assert isinstance(req, api.ChatRequest)
    body = json.loads(raw)      # accepted, so a JSON object: every field it has was of the right type
    assert all(type(body[k]) in (int, float) and body[k] == 0 for k in ("presence_penalty", "frequency_penalty")
               if body.get(k) is not None)
    assert body.get("n") is None or type(body["n"]) is int and body["n"] == 1
    assert body.get("stream_options") is None or type(body["stream_options"].get("include_usage", False)) is bool
    assert req.messages and req.messages[-1]["role"] == "user" and len(req.messages) <= api.MAX_MESSAGES
    assert [m["role"] for m in req.messages] == ["user", "assistant"] * (len(req.messages) // 2) + ["user"]
    assert all(isinstance(m["content"], str) for m in req.messages) and req.system in (None, *[req.system])
    assert req.system is None or isinstance(req.system, str)
    assert isinstance(req.stream, bool) and isinstance(req.include_usage, bool)
    over = req.overrides
    assert set(over) <= {"max_new_tokens", "temperature", "top_p", "stop"}
    if "max_new_tokens" in over:
        assert type(over["max_new_tokens"]) is int and 1 <= over["max_new_tokens"] <= LIMIT
    if "temperature" in over:
        assert math.isfinite(over["temperature"]) and 0 <= over["temperature"] <= 2
    if "top_p" in over:
        assert 0 < over["top_p"] <= 1
    if "stop" in over:
        assert 1 <= len(over["stop"]) <= 4 and all(isinstance(s, str) and s for s in over["stop"])
    return req


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request_bodies)
def test_any_body_is_a_request_or_a_4xx_error(raw):
    check(raw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 7).filter(lambda n: n % 2).map(_conversation), st.integers(1, LIMIT), st.floats(0, 2),
       st.booleans(), st.booleans())
def test_valid_requests_are_accepted_as_sent(messages, max_tokens, temperature, stream, usage):
    body = {"model": MODEL, "messages": [{"role": "system", "content": "be brief"}, *messages],
            "max_tokens": max_tokens, "temperature": temperature, "stream": stream,
            "stream_options": {"include_usage": usage}}
    req = check(json.dumps(body).encode())
    assert isinstance(req, api.ChatRequest)
    assert req.messages == messages and req.system == "be brief" and req.stream is stream
    assert req.include_usage is usage
    assert req.overrides == {"max_new_tokens": max_tokens, "temperature": temperature}
