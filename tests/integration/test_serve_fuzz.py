"""Property-based fuzzing of the server over HTTP (Hypothesis), on a stand-in backend: random methods, paths
(known, unknown, unicode), API keys (right, wrong, none) and bodies (the strategy of
tests/unit/infer/test_openai_fuzz.py: valid requests, wrong types, junk, bytes that are not JSON) always get a
2xx or 4xx answer in JSON (or a complete event stream), and the server still answers /health after each."""
from __future__ import annotations

import http.client
import importlib.util
import json
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_support import stub_server, wait_for

KEY = "fuzz-key-9d2e"


def _strategies():
    path = Path(__file__).parents[1] / "unit" / "infer" / "test_openai_fuzz.py"
    spec = importlib.util.spec_from_file_location("openai_fuzz_strategies", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _strategies()


@pytest.fixture(scope="module")
def server():
    with stub_server([f"serve.model_name={fuzz.MODEL}"], api_key=KEY) as s:
        yield s


paths = st.one_of(st.sampled_from(["/v1/chat/completions", "/v1/chat/completions/", "/v1/models", "/health",
                                   f"/v1/models/{fuzz.MODEL}", "/v1/models/gpt-4", "/", "/v1", "/v1/completions"]),
                  st.text(max_size=12).map(lambda t: "/v1/" + quote(t, safe="")),
                  st.text(max_size=12).map(lambda t: "/" + quote(t, safe="/")))
methods = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
keys = st.sampled_from([f"Bearer {KEY}", f"Bearer {KEY}", f"Bearer {KEY}", "Bearer wrong", KEY, None, "Bearer "])
chats = st.tuples(st.just("POST"), st.just("/v1/chat/completions"), st.just(f"Bearer {KEY}"), fuzz.request_bodies)
anything = st.tuples(methods, paths, keys, fuzz.request_bodies)


def request(port: int, method: str, path: str, body: bytes | None, auth: str | None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth is not None else {})}
        c.request(method, path, body, headers)
        r = c.getresponse()
        return r.status, r.headers.get("Content-Type", ""), r.read()
    finally:
        c.close()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.data_too_large])
@given(chats | anything)
def test_any_request_gets_a_json_2xx_or_4xx_and_the_server_keeps_serving(server, sent):
    method, path, auth, body = sent
    status, kind, data = request(server.port, method, path, body if method in ("POST", "PUT", "PATCH") else None,
                                 auth)
    assert 200 <= status < 300 or 400 <= status < 500, (status, data[:200])
    if kind.startswith("text/event-stream"):
        assert status == 200 and data.endswith(b"data: [DONE]\n\n")
        events = [json.loads(e[len(b"data: "):]) for e in data.split(b"\n\n") if e and e != b"data: [DONE]"]
        assert events and all(e["object"] == "chat.completion.chunk" for e in events)
    else:
        assert kind == "application/json", (status, kind, data[:200])
        answer = json.loads(data)
        if status >= 400:
            assert set(answer["error"]) == {"message", "type", "param", "code"}
    if status < 300 and path.rstrip("/").startswith("/v1"):
        assert auth == f"Bearer {KEY}"
    assert request(server.port, "GET", "/health", None, None)[0] == 200
    assert wait_for(lambda: server.app.gate.inside == 0)
