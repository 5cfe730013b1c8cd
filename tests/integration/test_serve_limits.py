"""The server's limits on a stand-in backend (HTTP plumbing only; test_serve.py runs the real model):
a burst of concurrent connections all get 200 or 429, never a reset (item 18); idle connections, slow headers
and slow bodies are cut after serve.idle_timeout / header_timeout / body_timeout, and open connections cost no
thread; serve.max_connections answers 429 beyond it; a client leaving a stream gives its slot back (item 19)."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_support import stub_server, wait_for

pytestmark = pytest.mark.timeout(120)

CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
STREAM = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


@pytest.fixture(scope="module")
def held():
    """2 generations at once, 4 waiting, generations wait for backend.release; 128 connections."""
    with stub_server(["serve.max_concurrency=2", "serve.max_queue=4", "serve.max_connections=128"], hold=True) as s:
        yield s


@pytest.fixture(scope="module")
def short():
    """1 s deadlines."""
    with stub_server(["serve.idle_timeout=1", "serve.header_timeout=1", "serve.body_timeout=1"]) as s:
        yield s


def post(port: int, body: bytes, path: str = "/v1/chat/completions", timeout: float = 60):
    """(status, body bytes, headers) or the exception the client got."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body, {"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read(), r.headers
    except Exception as e:   # a reset, a closed connection, a timeout: all failures here
        return e
    finally:
        c.close()


def get(port: int, path: str = "/health"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read(), r.headers
    finally:
        c.close()


def test_a_burst_of_60_connections_gets_200_or_429_never_a_reset(held):
    n, start = 60, threading.Barrier(60)

    def one(i):
        start.wait()
        return post(held.port, STREAM if i % 2 else CHAT)

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        busy = lambda: sum(1 for f in futures if f.done() and not isinstance(f.result(), Exception)  # noqa: E731
                           and f.result()[0] == 429)
        assert wait_for(lambda: busy() == n - 6, 30), [f.result() for f in futures if f.done()][:3]
        held.backend.release.set()      # the 2 generating and the 4 waiting finish
        got = [f.result() for f in futures]
    held.backend.release.clear()
    errors = [g for g in got if isinstance(g, Exception)]
    assert not errors, errors[:3]
    statuses = sorted(g[0] for g in got)
    assert statuses == [200] * 6 + [429] * (n - 6)
    refused = [g for g in got if g[0] == 429]
    assert all(g[2]["Retry-After"] == "1" and json.loads(g[1])["error"]["code"] == "rate_limit_exceeded"
               for g in refused)
    # which 6 of the 60 are let in is the order they arrive in: the admitted streams end properly, the admitted
    # plain requests carry a whole completion (all 6 may be of one kind: 2 % of the bursts)
    admitted = [g for g in got if g[0] == 200]
    streams = [g[1].decode() for g in admitted if g[2]["Content-Type"].startswith("text/event-stream")]
    plain = [json.loads(g[1]) for g in admitted if not g[2]["Content-Type"].startswith("text/event-stream")]
    assert len(streams) + len(plain) == 6
    assert all(s.endswith("data: [DONE]\n\n") for s in streams)
    assert all(p["choices"][0]["message"]["content"] is not None for p in plain)
    assert wait_for(lambda: held.app.gate.inside == 0)
    assert sum(' "POST /v1/chat/completions HTTP/1.1" 429' in line for line in held.log) >= n - 6


def test_a_client_leaving_a_stream_gives_its_slot_back(held):
    s = socket.create_connection(("127.0.0.1", held.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(STREAM), STREAM))
    assert held.backend.started.acquire(timeout=10)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")     # headers and the first (role) event are out
    assert held.app.gate.inside == 1
    s.close()
    held.backend.release.set()
    assert wait_for(lambda: held.app.gate.inside == 0)
    held.backend.release.clear()


def test_idle_slow_headers_and_slow_bodies_are_cut_and_connections_cost_no_thread(short):
    threads = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", short.port)) for _ in range(200)]
    slow_head = socket.create_connection(("127.0.0.1", short.port))
    slow_head.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")                 # never the blank line
    slow_body = socket.create_connection(("127.0.0.1", short.port))
    slow_body.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mes")
    kept = socket.create_connection(("127.0.0.1", short.port))                # one answer, then kept alive
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    opened = time.time()
    assert wait_for(lambda: len(short.app.connections) == 203), len(short.app.connections)
    assert threading.active_count() <= threads + 2                            # 203 connections, no new thread
    everyone = [*idle, slow_head, slow_body, kept]
    for s in everyone:
        s.settimeout(10)

    def rest(s) -> bytes:
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return data

    got = [rest(s) for s in everyone]
    took = time.time() - opened
    assert 0.9 <= took < 6
    assert all(g == b"" for g in got[:200])                                    # closed quietly
    for g, what in ((got[200], "headers"), (got[201], "body")):
        assert g.startswith(b"HTTP/1.1 408 ")
        message = json.loads(g.split(b"\r\n\r\n", 1)[1])["error"]["message"]
        assert message == f"the request {what} did not arrive in time"
    assert got[202].startswith(b"HTTP/1.1 200 ") and got[202].endswith(b'{"status": "ok"}')
    assert wait_for(lambda: not short.app.connections)
    for s in everyone:
        s.close()
    assert any("408: body incomplete after 1 s" in line for line in short.log)
    assert get(short.port)[0] == 200


def test_beyond_max_connections_a_request_gets_429_and_its_connection_closes(held):
    hold = [socket.create_connection(("127.0.0.1", held.port)) for _ in range(128)]
    try:
        assert wait_for(lambda: len(held.app.connections) == 128)
        status, body, headers = get(held.port, "/v1/models")
        assert status == 429 and headers["Retry-After"] == "1" and headers["Connection"] == "close"
        assert "serve.max_connections=128" in json.loads(body)["error"]["message"]
    finally:
        for s in hold:
            s.close()
    assert wait_for(lambda: not held.app.connections)
    assert get(held.port, "/v1/models")[0] == 200
