"""The server's connections (``python -m llmpipe.serve``; the requests and answers are llmpipe.serve's): uvicorn on
its h11 protocol, one read deadline at a time per connection (:class:`Connection`: ``serve.idle_timeout``,
``serve.header_timeout``, ``serve.body_timeout``; 408 and close for the last two), a socket bound at once with a
listen backlog of :data:`BACKLOG`, and a graceful stop of :data:`SHUTDOWN_GRACE` seconds."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from llmpipe.infer import openai_api as api

BACKLOG = 2048             # connections the kernel queues before we accept them (capped by net.core.somaxconn)
SHUTDOWN_GRACE = 30        # seconds requests in progress may take to finish after SIGTERM / Ctrl-C


@dataclass(frozen=True)
class Limits:
    """serve.max_connections and the three read deadlines of a connection (seconds)."""
    max_connections: int = 256
    idle: float = 5.0
    head: float = 10.0
    body: float = 30.0


def _timeout_bytes(what: str) -> bytes:
    """A whole 408 response, written by :class:`Connection` straight to the socket (no request to answer yet)."""
    body = json.dumps(api.ApiError(408, f"the request {what} did not arrive in time", code="request_timeout").body())
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body.encode()))


# ------------------------------------------------------------------------------------------- connections
class Connection(H11Protocol):
    """uvicorn's h11 connection with one read deadline at a time: ``idle`` while no request is in progress
    (closed quietly), ``head`` from a request's first byte to the end of its headers and ``body`` from there
    to the end of its body (both: 408 when nothing was answered yet, then closed). None while the request is
    being answered (generation takes as long as it takes). ``limits`` and ``log`` are set on a subclass."""

    limits: Limits = Limits()
    log = staticmethod(lambda line: None)

    def connection_made(self, transport) -> None:
        self._phase, self._timer = None, None
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc) -> None:
        self._set(None)
        super().connection_lost(exc)

    def _watch(self) -> None:
        phase = None
        if not self.transport.is_closing():
            their = self.conn.their_state
            if their is h11.IDLE:
                phase = "head" if self.conn.trailing_data[0] else "idle"
            elif their is h11.SEND_BODY:
                phase = "body"
        if phase != self._phase:
            self._set(phase)

    def _set(self, phase: str | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._phase, self._timer = phase, None
        if phase is not None:
            self._timer = self.loop.call_later(getattr(self.limits, phase), self._expire, phase)

    def _expire(self, phase: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if phase != "idle":
            client = self.client[0] if self.client else "-"
            seconds = getattr(self.limits, phase)
            if phase == "head":
                self.log(f"{client} 408: request headers incomplete after {seconds:g} s; closed")
            else:
                line = f'"{self.scope["method"]} {self.scope["path"]} HTTP/{self.scope["http_version"]}"'
                self.log(f"{client} {line} 408: body incomplete after {seconds:g} s; closed")
            if phase == "head" or not (self.cycle and self.cycle.response_started):
                self.transport.write(_timeout_bytes("headers" if phase == "head" else "body"))
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):   # main() installs its own handlers: uvicorn's would re-raise the signal at exit
        yield


class _LogBridge(logging.Handler):
    """uvicorn's warnings and errors (e.g. a malformed request, an exception in a request) into App.log."""

    def __init__(self, log):
        super().__init__(logging.WARNING)
        self.line = log

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.line(self.format(record))


class Server:
    """uvicorn serving ``asgi`` (llmpipe.serve.Front) for ``app`` (its ``limits`` and ``log``; ``connections`` is
    set to uvicorn's set of open connections) on a socket bound at once (a bind error is an OSError here, and the port
    of ``port=0`` is known before serving). :meth:`serve` blocks; :meth:`start` serves in a thread (tests)."""

    def __init__(self, asgi, app, host: str, port: int):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
        self.address = self.sock.getsockname()[:2]
        self.app, limits = app, app.limits
        protocol = type("LlmpipeConnection", (Connection,), {"limits": limits, "log": staticmethod(app.log)})
        config = uvicorn.Config(
            asgi, http=protocol, ws="none", lifespan="off", log_config=None, access_log=False,
            proxy_headers=False, server_header=False, headers=[("server", "llmpipe")], backlog=BACKLOG,
            timeout_keep_alive=limits.idle, timeout_graceful_shutdown=SHUTDOWN_GRACE)
        self.uvicorn = _Uvicorn(config)
        app.connections = self.uvicorn.server_state.connections
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        bridge, logger = _LogBridge(self.app.log), logging.getLogger("uvicorn.error")
        logger.addHandler(bridge)
        try:
            asyncio.run(self.uvicorn.serve(sockets=[self.sock]))
        finally:
            logger.removeHandler(bridge)
            self.sock.close()

    def stop(self, force: bool = False) -> None:
        """Stop accepting, let the requests in progress finish (``force``: do not wait), return from serve."""
        self.uvicorn.force_exit = force or self.uvicorn.should_exit
        self.uvicorn.should_exit = True

    def start(self) -> "Server":
        self._thread = threading.Thread(target=self.serve, name="llmpipe-serve", daemon=True)
        self._thread.start()
        end = time.time() + 30
        while not self.uvicorn.started and self._thread.is_alive() and time.time() < end:
            time.sleep(0.01)
        if not self.uvicorn.started:
            raise RuntimeError("the server did not start")
        return self

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(SHUTDOWN_GRACE + 5)
