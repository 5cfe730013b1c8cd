"""Soak test of ``python -m llmpipe.serve`` (not part of ``make test``): the real server on 127.0.0.1 with the
built-in tiny model (its base weights: nothing is trained) and an API key, under mixed valid and invalid traffic
for ``--minutes`` (default 10), while the server process's RSS, threads, open files and connections are sampled.

    .venv/bin/python -m bench.soak_serve [--minutes 10] [--workers 6] [--timeout 2] [--json out.json]

Traffic (each worker picks at random, weighted): chats (``max_tokens`` 1 to 8) and streams (some with usage,
some left after the first event), bad JSON, wrong types, unknown fields, oversized bodies (413), missing or
wrong key (401), unknown paths (404), wrong methods (405), models, health, idle sockets (closed by the server
after serve.idle_timeout), slow headers and slow bodies (408 after serve.header_timeout / body_timeout),
bursts of 40 concurrent chats (each 200 or 429). Every answer is checked against what that request deserves;
429 (busy) is accepted wherever the server may be busy.

Prints a summary (requests by kind and status, resets, unexpected answers, client errors, max RSS, max threads,
RSS and thread growth from the first to the last minute, shutdown) and exits 1 when an answer was unexpected,
a connection was reset, a client saw an error, the server died, logged an error or did not stop cleanly on
SIGTERM, the API key appeared in the log, or memory or threads grew without bound; 0 otherwise.
The server uses the llmpipe cache (LLMPIPE_CACHE) for the built-in tiny model: built once (minutes), then reused.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

KEY = "soak-key-" + os.urandom(6).hex()
HERE = Path(__file__).resolve().parent
CHAT = "/v1/chat/completions"


def chat_body(**extra) -> bytes:
    topic = random.choice(["the zappet", "the sea", "numbers", "a cat", "été, 東京 and ünïcödé"])
    body = {"model": "soak", "messages": [{"role": "user", "content": f"Say something about {topic}."}],
            "max_tokens": random.randint(1, 8), "temperature": random.choice([0, 0.7]), **extra}
    return json.dumps(body, ensure_ascii=False).encode()


class Tally:
    """Counts, thread-safe: answers by (kind, status), resets, unexpected answers, client errors."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_kind: collections.Counter = collections.Counter()
        self.by_status: collections.Counter = collections.Counter()
        self.resets = 0
        self.unexpected: list[str] = []
        self.errors: list[str] = []

    def answer(self, kind: str, status, expected: set) -> None:
        with self.lock:
            self.by_kind[kind] += 1
            self.by_status[status] += 1
            if status not in expected:
                self.unexpected.append(f"{kind}: got {status}, expected {sorted(map(str, expected))}")

    def failure(self, kind: str, e: BaseException) -> None:
        with self.lock:
            self.by_kind[kind] += 1
            if isinstance(e, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
                self.resets += 1
                self.by_status["reset"] += 1
                self.unexpected.append(f"{kind}: {type(e).__name__}: {e}")
            else:
                self.by_status["client error"] += 1
                self.errors.append(f"{kind}: {type(e).__name__}: {e}")


class Traffic:
    def __init__(self, port: int, tally: Tally, timeout: float):
        self.port, self.tally, self.timeout = port, tally, timeout

    # ------------------------------------------------------------------------------------------ helpers
    def call(self, kind, method, path, body=None, key=KEY, expected=(200,), busy=True, read=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            headers = {"Content-Type": "application/json"}
            if key is not None:
                headers["Authorization"] = f"Bearer {key}"
            c.request(method, path, body, headers)
            r = c.getresponse()
            data = r.read() if read is None else read(r)
            status = r.status
            if status not in (200, 429) and not r.headers.get("Content-Type", "").startswith("application/json"):
                status = f"{status} not JSON"
            elif status == 200 and r.headers.get("Content-Type", "").startswith("text/event-stream") and \
                    read is None and not data.endswith(b"data: [DONE]\n\n"):
                status = "200 stream incomplete"
            self.tally.answer(kind, status, set(expected) | ({429} if busy else set()))
        except Exception as e:
            self.tally.failure(kind, e)
        finally:
            c.close()

    def raw(self, kind: str, data: bytes, expect: bytes, within: float) -> None:
        """Send ``data`` and wait: the server must answer ``expect`` (a prefix; b"" = close quietly) in time."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=within)
        try:
            if data:
                s.sendall(data)
            got, start = b"", time.time()
            while chunk := s.recv(4096):
                got += chunk
            took = time.time() - start
            if not got.startswith(expect) or (expect == b"" and got):
                status = got.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
                self.tally.answer(kind, status, {"expected " + (expect.decode() or "close")})
            else:
                self.tally.answer(kind, (expect.decode().strip() or "closed") + " in time", {
                    (expect.decode().strip() or "closed") + " in time"} if took < within else set())
        except socket.timeout:
            self.tally.answer(kind, "not cut in time", set())
        except Exception as e:
            self.tally.failure(kind, e)
        finally:
            s.close()

    # ------------------------------------------------------------------------------------------ actions
    def chat(self):
        self.call("chat", "POST", CHAT, chat_body())

    def stream(self):
        usage = {"include_usage": random.random() < .5}
        self.call("stream", "POST", CHAT, chat_body(stream=True, stream_options=usage))

    def stream_left(self):   # the client reads the first event, then goes away: the generation must stop
        self.call("stream left", "POST", CHAT, chat_body(stream=True), read=lambda r: r.read1(64))

    def bad_json(self):
        self.call("bad json", "POST", CHAT, random.choice([b"{", b"", b"nope", b'{"messages": NaN}', b"\xff\xfe"]),
                  expected=(400,))

    def wrong_types(self):
        body = random.choice([{"messages": "hi"}, {"messages": [{"role": "robot", "content": "x"}]},
                              {"messages": [{"role": "user", "content": 5}]}, {"messages": [], "max_tokens": "8"},
                              {"messages": [{"role": "user", "content": "x"}], "temperature": [1]},
                              {"messages": [{"role": "user", "content": "x"}], "max_tokens": 10 ** 30},
                              {"messages": [{"role": "user", "content": "x"}], "tools": []}, [1, 2], "text", None])
        self.call("wrong types", "POST", CHAT, json.dumps(body).encode(), expected=(400,))

    def wrong_model(self):
        self.call("wrong model", "POST", CHAT, chat_body(model="gpt-4"), expected=(404,))

    def oversized(self):
        self.call("oversized", "POST", CHAT, b'{"messages": "' + b"x" * (1 << 20) + b'"}', expected=(413,))

    def unauthorized(self):
        self.call("unauthorized", "POST" if random.random() < .5 else "GET",
                  random.choice([CHAT, "/v1/models"]), chat_body(), key=random.choice([None, "wrong", ""]),
                  expected=(401,))

    def unknown(self):
        self.call("unknown path", random.choice(["GET", "POST"]), random.choice(["/v1/nothing", "/x", "/v2/chat"]),
                  expected=(404, 405))

    def wrong_method(self):
        self.call("wrong method", random.choice(["GET", "PUT", "DELETE"]), CHAT, expected=(405,))

    def models(self):
        self.call("models", "GET", random.choice(["/v1/models", "/v1/models/soak", "/health"]))

    def idle(self):
        self.raw("idle socket", b"", b"", self.timeout + 3)

    def slow_head(self):
        self.raw("slow headers", b"GET /health HTTP/1.1\r\nHost: x\r\n", b"HTTP/1.1 408", self.timeout + 3)

    def slow_body(self):
        self.raw("slow body", b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                 KEY.encode() + b"\r\nContent-Length: 500\r\n\r\n{\"messages\": [", b"HTTP/1.1 408", self.timeout + 3)

    def burst(self):
        with ThreadPoolExecutor(40) as pool:
            for _ in range(40):
                pool.submit(self.call, "burst chat", "POST", CHAT, chat_body(max_tokens=1))

    WEIGHTS = {"chat": 20, "stream": 12, "stream_left": 3, "bad_json": 8, "wrong_types": 8, "wrong_model": 3,
               "oversized": 2, "unauthorized": 6, "unknown": 4, "wrong_method": 3, "models": 8, "idle": 3,
               "slow_head": 2, "slow_body": 2, "burst": 1}

    def worker(self, until: float, seed: int) -> None:
        rng = random.Random(seed)
        names, weights = zip(*self.WEIGHTS.items())
        while time.time() < until:
            getattr(self, rng.choices(names, weights)[0])()


def sample(pid: int, samples: list, stop: threading.Event, every: float) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            samples.append((time.time(), proc.memory_info().rss, proc.num_threads(), proc.num_fds(),
                            len(proc.net_connections(kind="tcp"))))
        except psutil.Error:
            return
        stop.wait(every)


def start_server(args, root: Path):
    env = {**os.environ, "LLMPIPE_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    t = args.timeout
    cmd = [sys.executable, "-m", "llmpipe.serve", "model=tiny", "data.dataset=demo_sft", "serve.port=0",
           "serve.model_name=soak", f"serve.max_concurrency={args.concurrency}", f"serve.max_queue={args.queue}",
           f"serve.max_connections={args.connections}", f"serve.idle_timeout={t}", f"serve.header_timeout={t}",
           f"serve.body_timeout={t}", *args.overrides]
    log = open(root / "server.log", "w", encoding="utf-8")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    end = time.time() + args.start_timeout
    while time.time() < end and proc.poll() is None:
        m = re.search(r"on http://127\.0\.0\.1:(\d+)/v1", (root / "server.log").read_text(encoding="utf-8"))
        if m:
            return proc, int(m.group(1)), log
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"the server did not start:\n{(root / 'server.log').read_text()[-3000:]}")


def growth(samples: list, column: int, start: float, window: float) -> tuple[float, float]:
    """Median of ``column`` in the first and in the last ``window`` seconds after warm-up (``start``)."""
    late = [s for s in samples if s[0] >= start]
    if not late:
        return 0.0, 0.0
    first = [s[column] for s in late if s[0] <= late[0][0] + window] or [late[0][column]]
    last = [s[column] for s in late if s[0] >= late[-1][0] - window] or [late[-1][column]]
    return statistics.median(first), statistics.median(last)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=6, help="client threads sending traffic (plus bursts)")
    ap.add_argument("--timeout", type=float, default=2.0, help="serve.idle/header/body_timeout of the server")
    ap.add_argument("--concurrency", type=int, default=2, help="serve.max_concurrency")
    ap.add_argument("--queue", type=int, default=8, help="serve.max_queue")
    ap.add_argument("--connections", type=int, default=96, help="serve.max_connections")
    ap.add_argument("--every", type=float, default=3.0, help="seconds between samples of the server process")
    ap.add_argument("--start-timeout", type=float, default=600.0)
    ap.add_argument("--json", type=Path, help="also write the summary here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (server log)")
    ap.add_argument("overrides", nargs="*", help="more Hydra overrides for the server")
    args = ap.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="soak-serve-"))
    started = time.time()
    proc, port, log = start_server(args, root)
    print(f"soak: server pid {proc.pid} on 127.0.0.1:{port} (started in {time.time() - started:.0f} s); "
          f"{args.minutes:g} min of traffic, log {root / 'server.log'}", flush=True)
    tally, samples, stop = Tally(), [], threading.Event()
    sampler = threading.Thread(target=sample, args=(proc.pid, samples, stop, args.every), daemon=True)
    sampler.start()
    traffic = Traffic(port, tally, args.timeout)
    begin = time.time()
    until = begin + args.minutes * 60
    with ThreadPoolExecutor(args.workers) as pool:
        futures = [pool.submit(traffic.worker, until, seed) for seed in range(args.workers)]
        last = time.time()
        while not all(f.done() for f in futures) and proc.poll() is None:
            time.sleep(1.0)
            if time.time() - last >= 30 and samples:
                last = time.time()
                print(f"soak: {last - begin:5.0f} s  {sum(tally.by_kind.values())} requests  statuses "
                      f"{dict(tally.by_status)}  rss {samples[-1][1] / 2 ** 20:.0f} MiB  threads {samples[-1][2]}",
                      flush=True)
        for f in futures:
            f.result()
    alive = proc.poll() is None
    stop.set()
    sampler.join(10)
    t0 = time.time()
    if alive:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = "killed after 60 s"
    shutdown = time.time() - t0
    log.close()
    server_log = (root / "server.log").read_text(encoding="utf-8", errors="replace")

    warm = begin + min(60.0, args.minutes * 60 / 4)
    window = min(60.0, args.minutes * 60 / 4)
    rss0, rss1 = growth(samples, 1, warm, window)
    thr0, thr1 = growth(samples, 2, warm, window)
    summary = {
        "minutes": round((until - begin) / 60, 2), "requests": sum(tally.by_kind.values()),
        "by_status": {str(k): v for k, v in sorted(tally.by_status.items(), key=lambda kv: str(kv[0]))},
        "by_kind": dict(sorted(tally.by_kind.items())), "resets": tally.resets,
        "unexpected": len(tally.unexpected), "client_errors": len(tally.errors),
        "max_rss_mib": round(max((s[1] for s in samples), default=0) / 2 ** 20, 1),
        "rss_first_minute_mib": round(rss0 / 2 ** 20, 1), "rss_last_minute_mib": round(rss1 / 2 ** 20, 1),
        "max_threads": max((s[2] for s in samples), default=0), "threads_first_minute": thr0,
        "threads_last_minute": thr1, "max_fds": max((s[3] for s in samples), default=0),
        "max_tcp_connections": max((s[4] for s in samples), default=0), "samples": len(samples),
        "server_alive_at_end": alive, "exit_code": code, "shutdown_s": round(shutdown, 1),
        "key_in_log": KEY in server_log, "server_log_lines": server_log.count("\n"),
        "server_log_errors": sum(1 for line in server_log.splitlines()
                                 if "Traceback" in line or "Exception" in line or "Invalid HTTP" in line),
    }
    problems = []
    if tally.unexpected:
        problems.append(f"{len(tally.unexpected)} unexpected answers or resets, e.g. {tally.unexpected[:5]}")
    if tally.errors:
        problems.append(f"{len(tally.errors)} client errors, e.g. {tally.errors[:5]}")
    if not alive or code != 0:
        problems.append(f"the server {'died' if not alive else 'did not stop cleanly'} (exit {code})")
    if summary["server_log_errors"]:
        problems.append(f"{summary['server_log_errors']} errors in the server log")
    if summary["key_in_log"]:
        problems.append("the API key appears in the server log")
    if rss1 > rss0 * 1.25 + 64 * 2 ** 20:
        problems.append(f"RSS grew from {rss0 / 2 ** 20:.0f} to {rss1 / 2 ** 20:.0f} MiB")
    bound = 2 * args.concurrency + 48
    if summary["max_threads"] > (samples[0][2] if samples else 0) + bound or thr1 > thr0 + 8:
        problems.append(f"threads grew: first minute {thr0}, last {thr1}, max {summary['max_threads']}")
    summary["problems"] = problems
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    if not args.keep and not problems:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    print("soak: " + ("FAILED: " + "; ".join(problems) if problems else "passed"), flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
