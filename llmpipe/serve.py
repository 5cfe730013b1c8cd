"""``python -m llmpipe.serve [overrides]``: an OpenAI-compatible HTTP server for the recipe's trained model
(else the base model, and it says which), on ``serve.host`` (default 127.0.0.1) : ``serve.port``.

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions`` (JSON, or SSE with
``"stream": true``), ``GET /health`` (no key needed). With ``LLMPIPE_API_KEY`` set, every ``/v1`` request
needs ``Authorization: Bearer <key>`` (compared in constant time; the key is never logged) or gets 401.
Bad requests get a 4xx JSON error and the server keeps serving. ``tools`` in a request are written into the
prompt in the run's tool format and an answer that calls them comes back as ``message.tool_calls``
(llmpipe.infer.openai_api; streamed, such an answer is held back and sent at its end). A vision-language model
takes ``image_url`` parts within the ``serve.max_images`` / ``max_image_bytes`` / ``max_image_pixels`` limits
(data URLs; local files with ``serve.allow_local_images``; llmpipe.infer.mm_request), a text-only one refuses
them. At most ``serve.max_concurrency`` generations run at once and ``serve.max_queue`` more requests wait for a
slot; beyond that: 429.

Starlette (routing, requests, responses) on uvicorn (h11) with an event loop: connections cost no thread.
Generation is blocking (torch) code: it runs in worker threads, at most ``serve.max_concurrency`` at once.
Every connection has one read deadline at a time (:class:`Connection`): ``serve.idle_timeout`` while no
request is in progress, ``serve.header_timeout`` for a request's headers, ``serve.body_timeout`` for its body
(408 and close for the last two). A request that arrives while more than ``serve.max_connections``
connections are open gets 429 and its connection is closed. The connections themselves (read deadlines, uvicorn, the
socket and its backlog) are in :mod:`llmpipe.serve_transport`.
The log holds one line per request (client, method, path without the query, status): never headers or bodies.
"""
from __future__ import annotations

import hmac
import json
import os
import signal
import sys
import time
import traceback
from functools import partial

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llmpipe.infer import openai_api as api
from llmpipe.infer.mm_request import ImagePolicy, image_prompt
from llmpipe.interactive import Program
from llmpipe.serve_transport import Limits, Server

PROG = "llmpipe.serve"
KEY_ENV = "LLMPIPE_API_KEY"
BIG_BODY = 64 << 10        # bodies larger than this are parsed in a worker thread (keeps the event loop free)


class Gate:
    """``slots`` generations at once, ``queue`` more waiting; :meth:`enter` is False at once when both are full.
    Used from the event loop only."""

    def __init__(self, slots: int, queue: int):
        self.slots, self.queue, self.inside = slots, queue, 0
        self._sem = anyio.Semaphore(slots)

    async def enter(self) -> bool:
        if self.inside >= self.slots + self.queue:
            return False
        self.inside += 1
        try:
            await self._sem.acquire()
        except BaseException:   # cancelled while waiting (e.g. shutdown): give the place back
            self.inside -= 1
            raise
        return True

    def leave(self) -> None:
        self._sem.release()
        self.inside -= 1


class App:
    """Everything a request needs: the session, the model id, the key, the gate, the limits."""

    def __init__(self, session, *, api_key: str | None = None, log=None):
        from llmpipe.infer.generation import from_config

        s = session.obj.serve
        self.session, self.api_key = session, api_key or None
        self.model_id = s.model_name or session.recipe or "llmpipe"
        self.gate = Gate(s.max_concurrency, s.max_queue)
        self.limits = Limits(s.max_connections, s.idle_timeout, s.header_timeout, s.body_timeout)
        # generation threads; streams take a second one to wait for their pieces
        self.threads = anyio.CapacityLimiter(2 * s.max_concurrency + 2)
        self.connections: set = set()     # the open connections (the server's own set once it runs)
        self.params = from_config(session.obj)
        limit = self.params.max_length
        self.max_tokens = min(limit, session.backend.engine_limit) if session.backend.engine_limit else limit
        self.created = int(time.time())
        self.images = ImagePolicy.from_config(s)          # image_url parts: llmpipe.infer.mm_request
        self.vision = getattr(session, "vision", None)    # None: a text-only model, which takes no images
        self.max_body = api.MAX_BODY + (self.images.body_bytes() if self.vision is not None else 0)
        self.log = log or (lambda line: print(f"{PROG}: {line}", file=sys.stderr, flush=True))

    def authorized(self, header: str | None) -> bool:
        if not self.api_key:
            return True
        given = (header or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode("utf-8"), self.api_key.encode("utf-8"))


# ------------------------------------------------------------------------------------------------ responses
def _json(status: int, body: dict, headers: dict | None = None) -> Response:
    headers = dict(headers or {})
    if status == 429:
        headers["Retry-After"] = "1"
    return Response(json.dumps(body, ensure_ascii=False).encode("utf-8"), status, headers, "application/json")


def _error(e: api.ApiError, headers: dict | None = None) -> Response:
    return _json(e.status, e.body(), headers)


def _busy(message: str) -> api.ApiError:
    return api.ApiError(429, message, code="rate_limit_exceeded", kind="rate_limit_error")


class _Nobody(Response):
    """No answer: the client is gone (uvicorn expects none then, and the log gets no line)."""

    def __init__(self):
        pass

    async def __call__(self, scope, receive, send) -> None:
        return None


def _event(body) -> bytes:
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return f"data: {data}\n\n".encode("utf-8")


class EventStream(StreamingResponse):
    """The SSE answer of one generation. It owns the generation slot: whatever ends it (the last event, an
    error, the client going away, shutdown), the generation is stopped and the slot given back, once."""

    def __init__(self, app: App, cid: str, stream, include_usage: bool, read_calls=None):
        self.app, self.cid, self.stream, self.include_usage, self.ended = app, cid, stream, include_usage, False
        self.read_calls = read_calls   # with tools: the answer is held back and read for calls at its end
        super().__init__(self._events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def _events(self):
        app, cid, model, stream = self.app, self.cid, self.app.model_id, self.stream
        pieces, end, held = iter(stream), object(), []
        try:
            yield _event(api.chunk_body(cid, model, {"role": "assistant", "content": ""}))
            while (piece := await anyio.to_thread.run_sync(next, pieces, end, abandon_on_cancel=True,
                                                           limiter=app.threads)) is not end:
                if self.read_calls:
                    held.append(piece)
                else:
                    yield _event(api.chunk_body(cid, model, {"content": piece}))
            self.ended = True
            done = stream.result
            finish = done.finish_reason
            if self.read_calls:
                text = "".join(held)
                message, finish = api.answer_message(text, finish, self.read_calls(text))
                delta = {k: v for k, v in message.items() if k != "role" and v is not None}
                if "tool_calls" in delta:
                    delta["tool_calls"] = [dict(c, index=i) for i, c in enumerate(delta["tool_calls"])]
                if delta:
                    yield _event(api.chunk_body(cid, model, delta))
            yield _event(api.chunk_body(cid, model, {}, finish))
            if self.include_usage:
                yield _event(api.chunk_body(cid, model, {}, usage_of=done))
            yield _event("[DONE]")
        except Exception as e:   # headers are out: report in the stream, then end it
            yield _event({"error": {"message": str(e), "type": "server_error", "param": None, "code": None}})

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.ended:
                self.stream.close()
            self.app.gate.leave()


# ---------------------------------------------------------------------------------------------- endpoints
async def _health(request: Request) -> Response:
    return _json(200, {"status": "ok"})


async def _models(request: Request) -> Response:
    app: App = request.app.state.llmpipe
    return _json(200, api.models_body(app.model_id, app.created))


async def _model(request: Request) -> Response:
    app: App = request.app.state.llmpipe
    name = request.path_params["name"]
    if name == app.model_id:
        return _json(200, api.models_body(app.model_id, app.created)["data"][0])
    return _error(api.ApiError(404, f"the model {name!r} does not exist", "model", "model_not_found"))


async def _body(request: Request, limit: int) -> bytes:
    if request.headers.get("transfer-encoding", "").lower() == "chunked":
        raise api.ApiError(411, "send the body with a Content-Length (chunked bodies are not supported)")
    try:
        n = int(request.headers.get("content-length", "0"))
    except ValueError:
        raise api.ApiError(400, "Content-Length is not a number") from None
    if n > limit:
        raise api.ApiError(413, f"the request body is larger than {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():   # h11 holds it to Content-Length; Connection cuts a slow one (408)
        raw += chunk
    return bytes(raw)


async def _chat(request: Request) -> Response:
    app: App = request.app.state.llmpipe
    try:
        raw = await _body(request, app.max_body)
        parse = partial(api.parse_chat_request, raw, model_id=app.model_id, max_tokens_limit=app.max_tokens)
        req = await anyio.to_thread.run_sync(parse) if len(raw) > BIG_BODY else parse()
    except api.ApiError as e:
        return _error(e)
    except ClientDisconnect:   # gone (or cut by the body timeout): nobody to answer
        return _Nobody()
    if not await app.gate.enter():
        return _error(_busy("the server is busy (serve.max_concurrency generations and serve.max_queue waiting "
                            "requests); retry shortly"))
    handed_over = False
    try:
        response = await _complete(app, req)
        handed_over = isinstance(response, EventStream)
        return response
    finally:
        if not handed_over:
            app.gate.leave()


async def _complete(app: App, req: api.ChatRequest) -> Response:
    from llmpipe.infer.engine import InferenceError
    from llmpipe.infer.generation import PromptTooLong

    s = app.session
    params = app.params.with_request(**req.overrides)
    cid = api.new_id()

    def work():
        prompt = image_prompt(app, req) if req.images or app.vision else \
            s.prompter.encode(req.messages, req.system, req.tools)
        return s.backend.stream(prompt, params) if req.stream else s.backend.generate([prompt], params)[0]

    try:
        done = await anyio.to_thread.run_sync(work, limiter=app.threads)
    except api.ApiError as e:   # an image refused (llmpipe.infer.mm_request)
        return _error(e)
    except PromptTooLong as e:
        return _error(api.ApiError(400, str(e), "messages", "context_length_exceeded"))
    except (InferenceError, ValueError) as e:
        return _error(api.ApiError(400 if isinstance(e, ValueError) else 500, str(e),
                                   kind="invalid_request_error" if isinstance(e, ValueError) else "server_error"))
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        return _error(api.ApiError(500, f"internal error ({type(e).__name__})", kind="server_error"))
    read = s.prompter.parse_calls if req.read_calls else None
    if req.stream:
        return EventStream(app, cid, done, req.include_usage, read)
    return _json(200, api.completion_body(cid, app.model_id, done, read(done.text) if read else None))


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 405:
        allowed = (getattr(exc, "headers", None) or {}).get("Allow", "")
        return _error(api.ApiError(405, f"use {allowed or 'another method'} for {request.url.path}"),
                      {"Allow": allowed} if allowed else None)
    if status == 404:
        return _error(api.ApiError(404, f"no such endpoint: {request.method} {request.url.path}"))
    return _error(api.ApiError(status, getattr(exc, "detail", "") or "request refused"))


async def _internal(request: Request, exc: Exception) -> Response:
    return _error(api.ApiError(500, f"internal error ({type(exc).__name__})", kind="server_error"))


# -------------------------------------------------------------------------------------------- asgi app
class Front:
    """The ASGI entry: trailing slashes off the path, the access log line, the connection cap (429) and the
    API key (401) before any routing, then the Starlette app."""

    def __init__(self, app: App):
        self.app = app
        routes = [Route("/health", _health, methods=["GET"]), Route("/v1/models", _models, methods=["GET"]),
                  Route("/v1/models/{name:path}", _model, methods=["GET"]),
                  Route("/v1/chat/completions", _chat, methods=["POST"])]
        self.inner = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _internal})
        self.inner.state.llmpipe = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        app = self.app
        path = scope["path"].rstrip("/") or "/"
        scope = {**scope, "path": path}
        client = (scope.get("client") or ("-",))[0]
        line = f'{client} "{scope["method"]} {path} HTTP/{scope["http_version"]}"'

        async def logged(message) -> None:
            if message["type"] == "http.response.start":
                app.log(f"{line} {message['status']}")
            await send(message)

        response = None
        if len(app.connections) > app.limits.max_connections:
            response = _error(_busy(f"too many open connections (serve.max_connections="
                                    f"{app.limits.max_connections}); retry shortly"), {"Connection": "close"})
        elif path.startswith("/v1") and not app.authorized(_header(scope, b"authorization")):
            response = _error(api.ApiError(401, "invalid or missing API key (Authorization: Bearer <key>)",
                                           code="invalid_api_key"))
        if response is not None:   # an unread body is read and dropped by uvicorn (keep-alive) or cut (close)
            return await response(scope, receive, logged)
        await self.inner(scope, receive, logged)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def make_server(app: App, host: str, port: int) -> Server:
    return Server(Front(app), app, host, port)


def main(argv: list[str] | None = None) -> int:
    from llmpipe.interactive import open_session

    argv = list(sys.argv[1:] if argv is None else argv)
    session = open_session(argv, PROG, extra_usage=", serve.host, serve.port, serve.max_concurrency, serve.max_queue, "
                                                   "serve.max_connections, serve.*_timeout")
    app = App(session, api_key=os.environ.get(KEY_ENV))
    s, lim = session.obj.serve, app.limits
    try:
        server = make_server(app, s.host, s.port)
    except OSError as e:
        print(f"{PROG}: cannot listen on {s.host}:{s.port}: {e.strerror or e}", file=sys.stderr)
        session.backend.close()
        return 1
    host, port = server.address
    app.log(f"model: {session.ref.describe()}")
    app.log(f"chose {session.note}")
    app.log(f"backend {session.backend.name}; {s.max_concurrency} generations at once, {s.max_queue} waiting; "
            f"API key {'required (' + KEY_ENV + ')' if app.api_key else 'not required (set ' + KEY_ENV + ')'}")
    app.log(f"at most {lim.max_connections} connections; timeouts: idle {lim.idle:g} s, headers {lim.head:g} s, "
            f"body {lim.body:g} s")
    if app.vision is not None:
        im = app.images
        app.log(f"images: at most {im.max_images} per request, {im.max_bytes} bytes and "
                f"{im.max_pixels} pixels each; data URLs{', local files' if im.allow_local else ''}")
    app.log(f"serving {app.model_id!r} on http://{host}:{port}/v1")
    stopping: list[int] = []

    def stop(signum, frame) -> None:
        stopping.append(signum)
        server.stop()   # a second signal: stop without waiting for the requests in progress

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        server.serve()
    finally:
        app.log("stopped" + (f" ({signal.Signals(stopping[0]).name})" if stopping else ""))
        session.backend.close()
    return 0


# python -m llmpipe.serve, and llmpipe-tools serve (tools/cli.py COMMANDS)
PROGRAM = Program(main, PROG)
main_clean, setup, run, cli = PROGRAM.main_clean, PROGRAM.setup, PROGRAM.run, PROGRAM.cli


if __name__ == "__main__":
    cli()
