"""``python -m llmpipe.serve [overrides]``: an OpenAI-compatible HTTP server for the recipe's trained model
(else the base model, and it says which), on ``serve.host`` (default 127.0.0.1) : ``serve.port``.

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions`` (JSON, or SSE with
``"stream": true``), ``GET /health`` (no key needed). With ``LLMPIPE_API_KEY`` set, every ``/v1`` request
needs ``Authorization: Bearer <key>`` (compared in constant time; the key is never logged) or gets 401.
Bad requests get a 4xx JSON error and the server keeps serving. At most ``serve.max_concurrency``
generations run at once and ``serve.max_queue`` more requests wait for a slot; beyond that: 429.
Standard library HTTP (ThreadingHTTPServer): one thread per connection, no extra dependency.
"""
from __future__ import annotations

import hmac
import json
import os
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from llmpipe.infer import openai_api as api
from llmpipe.interactive import Program

PROG = "llmpipe.serve"
KEY_ENV = "LLMPIPE_API_KEY"


class Gate:
    """``slots`` generations at once, ``queue`` more waiting; :meth:`enter` is False when both are full."""

    def __init__(self, slots: int, queue: int):
        self.slots, self.queue = slots, queue
        self._sem, self._lock, self.inside = threading.Semaphore(slots), threading.Lock(), 0

    def enter(self) -> bool:
        with self._lock:
            if self.inside >= self.slots + self.queue:
                return False
            self.inside += 1
        self._sem.acquire()
        return True

    def leave(self) -> None:
        self._sem.release()
        with self._lock:
            self.inside -= 1


class App:
    """Everything a request handler needs: the session, the model id, the key, the gate, the limits."""

    def __init__(self, session, *, api_key: str | None = None, log=None):
        from llmpipe.infer.generation import from_config

        s = session.obj.serve
        self.session, self.api_key = session, api_key or None
        self.model_id = s.model_name or session.recipe or "llmpipe"
        self.gate = Gate(s.max_concurrency, s.max_queue)
        self.params = from_config(session.obj)
        limit = self.params.max_length
        self.max_tokens = min(limit, session.backend.engine_limit) if session.backend.engine_limit else limit
        self.created = int(time.time())
        self.log = log or (lambda line: print(f"{PROG}: {line}", file=sys.stderr, flush=True))

    def authorized(self, header: str | None) -> bool:
        if not self.api_key:
            return True
        given = (header or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode("utf-8"), self.api_key.encode("utf-8"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llmpipe"
    app: App = None  # type: ignore[assignment]  (set on the subclass made by make_server)

    # ---------------------------------------------------------------------------------------- plumbing
    def log_message(self, format, *args):   # request lines only: never headers or bodies
        self.app.log(f"{self.client_address[0]} " + (format % args))

    def _send_json(self, status: int, body: dict, close: bool = False) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "1")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _error(self, e: api.ApiError, close: bool = False) -> None:
        self._send_json(e.status, e.body(), close)

    def _guard(self, close: bool = False) -> bool:
        """The API key check; ``close``: the body was not read, so the connection cannot carry another request."""
        if self.path.startswith("/v1") and not self.app.authorized(self.headers.get("Authorization")):
            self._error(api.ApiError(401, "invalid or missing API key (Authorization: Bearer <key>)",
                                     code="invalid_api_key"), close=close)
            return False
        return True

    # ----------------------------------------------------------------------------------------- routes
    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/health":
            return self._send_json(200, {"status": "ok"})
        if not self._guard():
            return
        body = api.models_body(self.app.model_id, self.app.created)
        if path == "/v1/models":
            return self._send_json(200, body)
        if path.startswith("/v1/models/"):
            name = path[len("/v1/models/"):]
            if name == self.app.model_id:
                return self._send_json(200, body["data"][0])
            return self._error(api.ApiError(404, f"the model {name!r} does not exist", "model", "model_not_found"))
        if path == "/v1/chat/completions":
            return self._error(api.ApiError(405, "use POST for /v1/chat/completions"))
        self._error(api.ApiError(404, f"no such endpoint: GET {path}"))

    def do_POST(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        if not self._guard(close=True):
            return
        try:
            raw = self._body()
        except api.ApiError as e:
            return self._error(e, close=True)
        if path != "/v1/chat/completions":
            return self._error(api.ApiError(404 if path != "/v1/models" else 405, f"no such endpoint: POST {path}"))
        try:
            req = api.parse_chat_request(raw, model_id=self.app.model_id, max_tokens_limit=self.app.max_tokens)
        except api.ApiError as e:
            return self._error(e)
        if not self.app.gate.enter():
            return self._error(api.ApiError(429, "the server is busy (serve.max_concurrency generations and "
                                                 "serve.max_queue waiting requests); retry shortly",
                                            code="rate_limit_exceeded", kind="rate_limit_error"))
        try:
            self._complete(req)
        finally:
            self.app.gate.leave()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise api.ApiError(411, "send the body with a Content-Length (chunked bodies are not supported)")
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise api.ApiError(400, "Content-Length is not a number") from None
        if n > api.MAX_BODY:
            raise api.ApiError(413, f"the request body is larger than {api.MAX_BODY} bytes")
        return self.rfile.read(n) if n > 0 else b""

    # ------------------------------------------------------------------------------------- generation
    def _complete(self, req: api.ChatRequest) -> None:
        from llmpipe.infer.engine import InferenceError
        from llmpipe.infer.generation import PromptTooLong

        s = self.app.session
        params = self.app.params.with_request(**req.overrides)
        cid = api.new_id()
        try:
            prompt = s.prompter.encode(req.messages, req.system)
            if req.stream:
                return self._stream(cid, s.backend.stream(prompt, params), req.include_usage)
            done = s.backend.generate([prompt], params)[0]
        except PromptTooLong as e:
            return self._error(api.ApiError(400, str(e), "messages", "context_length_exceeded"))
        except (InferenceError, ValueError) as e:
            return self._error(api.ApiError(400 if isinstance(e, ValueError) else 500, str(e),
                                            kind="invalid_request_error" if isinstance(e, ValueError) else "server_error"))
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            return self._error(api.ApiError(500, f"internal error ({type(e).__name__})", kind="server_error"))
        self._send_json(200, api.completion_body(cid, self.app.model_id, done))

    def _stream(self, cid: str, stream, include_usage: bool) -> None:
        model = self.app.model_id
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()

        def event(body) -> None:
            data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
            self.wfile.write(f"data: {data}\n\n".encode("utf-8"))
            self.wfile.flush()

        try:
            event(api.chunk_body(cid, model, {"role": "assistant", "content": ""}))
            for piece in stream:
                event(api.chunk_body(cid, model, {"content": piece}))
            done = stream.result
            event(api.chunk_body(cid, model, {}, done.finish_reason))
            if include_usage:
                event(api.chunk_body(cid, model, {}, usage_of=done))
            event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):   # the client went away: stop generating
            stream.close()
        except Exception as e:   # headers are out: report in the stream, then end it
            stream.close()
            event({"error": {"message": str(e), "type": "server_error", "param": None, "code": None}})


def _stop(*_) -> None:
    raise KeyboardInterrupt


def make_server(app: App, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("LlmpipeHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    from llmpipe.interactive import open_session

    argv = list(sys.argv[1:] if argv is None else argv)
    session = open_session(argv, PROG, extra_usage=", serve.host, serve.port, serve.max_concurrency, serve.max_queue")
    app = App(session, api_key=os.environ.get(KEY_ENV))
    s = session.obj.serve
    try:
        server = make_server(app, s.host, s.port)
    except OSError as e:
        print(f"{PROG}: cannot listen on {s.host}:{s.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    app.log(f"model: {session.ref.describe()}")
    app.log(f"chose {session.note}")
    app.log(f"backend {session.backend.name}; {s.max_concurrency} generations at once, {s.max_queue} waiting; "
            f"API key {'required (' + KEY_ENV + ')' if app.api_key else 'not required (set ' + KEY_ENV + ')'}")
    app.log(f"serving {app.model_id!r} on http://{host}:{port}/v1")
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        app.log("stopping")
    finally:
        server.server_close()
        session.backend.close()
    return 0


# python -m llmpipe.serve, and llmpipe-tools serve (tools/cli.py COMMANDS)
PROGRAM = Program(main, PROG)
main_clean, setup, run, cli = PROGRAM.main_clean, PROGRAM.setup, PROGRAM.run, PROGRAM.cli


if __name__ == "__main__":
    cli()
