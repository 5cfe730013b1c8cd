"""``python -m llmpipe.serve`` with the official ``openai`` client: the server this test starts on
127.0.0.1 (any free port) serves the exported model of the shared quick run, with an API key. Models,
completions streamed and not, a burst of concurrent requests, wrong keys and bad requests (4xx, and the
server keeps serving). The 429 of a full server is checked on an in-process server with a stand-in model."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

openai = pytest.importorskip("openai")

KEY = "test-key-5f1c2a"
ZAPPET = [{"role": "user", "content": "What is the colour of the zappet?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from test_predict import env_for, quick, trained_store

    root = trained_store(tmp_path_factory)
    env = {**env_for(root), "LLMPIPE_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "llmpipe.serve", *quick(root), "serve.port=0",
                             "serve.max_concurrency=2", "serve.max_queue=16"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    url, end = None, time.time() + 300
    while url is None and time.time() < end and proc.poll() is None:
        found = [re.search(r"on (http://127\.0\.0\.1:\d+/v1)", line) for line in list(lines)]
        url = next((m.group(1) for m in found if m), None)
        time.sleep(0.2)
    if url is None:
        proc.kill()
        raise AssertionError("the server did not start:\n" + "".join(lines[-60:]))
    yield SimpleNamespace(url=url, proc=proc, log=lines, root=root)
    proc.terminate()
    assert proc.wait(30) == 0
    assert not any(KEY in line for line in lines), "the API key was logged"


def client(server, key=KEY):
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=120)


def ask(server, messages=ZAPPET, **kw):
    return client(server).chat.completions.create(model="demo", messages=messages, **kw)



@pytest.mark.slow
def test_models_and_which_model(server):
    assert [m.id for m in client(server).models.list()] == ["demo"]
    log = "".join(server.log)
    assert "chose the configuration's trained result from the store" in log
    assert f"exported (export): {server.root / 'export'}" in log and "API key required" in log


@pytest.mark.slow
def test_completion_streamed_and_not(server):
    first = ask(server, temperature=0, max_tokens=24)
    again = ask(server, temperature=0, max_tokens=24)
    assert first.choices[0].message.content == again.choices[0].message.content     # greedy: deterministic
    assert first.choices[0].finish_reason in ("stop", "length") and first.model == "demo"
    usage = first.usage
    assert usage.prompt_tokens > 10 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    chunks = list(ask(server, temperature=0, max_tokens=24, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == first.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [first.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == usage.completion_tokens
    if usage.completion_tokens > 2:
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1   # streamed in pieces


@pytest.mark.slow
def test_max_tokens_and_stop_are_honoured(server):
    short = ask(server, temperature=0, max_tokens=1)
    assert short.usage.completion_tokens == 1
    full = ask(server, temperature=0, max_tokens=24).choices[0].message.content
    if len(full) > 3:
        cut = ask(server, temperature=0, max_tokens=24, stop=[full[2:4]]).choices[0].message.content
        assert cut == full[:2]


@pytest.mark.slow
def test_wrong_or_missing_key_is_401(server):
    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong-key").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong-key").chat.completions.create(model="demo", messages=ZAPPET)
    req = urllib.request.Request(server.url + "/models")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 401


@pytest.mark.slow
@pytest.mark.parametrize("kw,error", [
    ({"messages": []}, openai.BadRequestError),
    ({"messages": ZAPPET, "max_tokens": 10 ** 9}, openai.BadRequestError),
    ({"messages": [{"role": "robot", "content": "hi"}]}, openai.BadRequestError),
    ({"messages": ZAPPET, "n": 2}, openai.BadRequestError),
    ({"messages": ZAPPET, "model": "gpt-4"}, openai.NotFoundError),
])
def test_bad_requests_are_4xx_and_the_server_keeps_serving(server, kw, error):
    kw = {"model": "demo", **kw}
    with pytest.raises(error) as e:
        client(server).chat.completions.create(**kw)
    assert e.value.body["message"]
    assert ask(server, temperature=0, max_tokens=4).choices[0].message is not None
    assert server.proc.poll() is None


@pytest.mark.slow
def test_tools_the_models_own_template_cannot_write_are_400(server):
    """The demo model trains with data.template=null (builtin:tiny's own template, which has no place for
    tools): tools in a request are refused with the reason instead of answered without them."""
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as e:
        ask(server, tools=[tool], max_tokens=4)
    assert "does not write tool definitions" in e.value.body["message"] and "data.tool_format" in e.value.body["message"]
    assert ask(server, temperature=0, max_tokens=4).choices[0].finish_reason in ("stop", "length")


@pytest.mark.slow
def test_malformed_json_is_400(server):
    req = urllib.request.Request(server.url + "/chat/completions", data=b'{"messages": [',
                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400 and "not valid JSON" in json.loads(e.value.read())["error"]["message"]


@pytest.mark.slow
def test_a_burst_of_concurrent_requests(server):
    questions = [f"Add the numbers and answer in words.\n{a} plus {b}" for a, b in
                 [("two", "three"), ("four", "one"), ("six", "two"), ("one", "one")]] * 3

    def one(q):
        r = ask(server, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=12,
                stream=len(q) % 2 == 0)
        if hasattr(r, "choices"):
            return r.choices[0].message.content
        return "".join(c.choices[0].delta.content or "" for c in r if c.choices)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(one, questions))
    alone = {q: one(q) for q in questions[:4]}
    assert answers == [alone[q] for q in questions]      # concurrency changes nothing


# ------------------------------------------------------------------- 429, in-process with a stand-in model
@pytest.mark.timeout(120)
def test_a_full_server_answers_429_then_serves_again():
    from serve_support import stub_server

    with stub_server(["serve.max_concurrency=1", "serve.max_queue=0"], hold=True) as s:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="none", max_retries=0, timeout=30)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(c.chat.completions.create, model="standin", messages=ZAPPET)
            assert s.backend.started.acquire(timeout=30)      # the only slot is taken, nothing may wait
            with pytest.raises(openai.RateLimitError) as e:
                c.chat.completions.create(model="standin", messages=ZAPPET)
            assert e.value.response.headers["retry-after"] == "1"
            s.backend.release.set()
            assert first.result(30).choices[0].message.content == "hello"
        assert c.chat.completions.create(model="standin", messages=ZAPPET).choices[0].message.content == "hello"
