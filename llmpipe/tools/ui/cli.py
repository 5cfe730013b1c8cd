"""``llmpipe-tools ui``: serve the local web page (docs/ui.md) with uvicorn, on 127.0.0.1 unless told otherwise."""
from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="*", type=Path,
                   help="folders to read jobs and sweeps from (default: outputs/ and multirun/ of this folder)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default: 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only); another address needs --expose")
    p.add_argument("--expose", action="store_true",
                   help="allow a --host other than this machine: anyone who reaches it can read your runs")
    p.add_argument("--token", default=None,
                   help="require this token (?token=... once, then a cookie); 'auto' makes one and prints the "
                        "link; default: $LLMPIPE_UI_TOKEN, else none")


def resolve_token(value: str | None) -> str | None:
    value = value if value is not None else os.environ.get("LLMPIPE_UI_TOKEN") or None
    return secrets.token_urlsafe(16) if value == "auto" else value


def run(args: argparse.Namespace) -> int:
    if args.host not in LOCAL_HOSTS and not args.expose:
        print(f"llmpipe-tools ui: --host {args.host} would let other machines read your runs and configs; add "
              "--expose to mean it (and consider --token auto)", file=sys.stderr)
        return 2
    folders = list(args.folders) or [Path("outputs"), Path("multirun")]
    missing = [f for f in args.folders if not f.is_dir()]
    if missing:
        print(f"llmpipe-tools ui: not a folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    token = resolve_token(args.token)
    if args.host not in LOCAL_HOSTS:
        print(f"llmpipe-tools ui: WARNING: listening on {args.host}: every machine that reaches this address can "
              f"read the runs under {', '.join(map(str, folders))}" + ("" if token else " (no --token set)"),
              file=sys.stderr)
    import uvicorn

    from llmpipe.tools.ui.app import build_app

    local = args.host in LOCAL_HOSTS
    app = build_app(folders, token=token, hosts=["127.0.0.1", "localhost", "::1", "[::1]"] if local else None)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    def announce():   # the real port (with --port 0) is known only once the socket is bound
        port = next(iter(server.servers[0].sockets)).getsockname()[1] if server.servers else args.port
        host = f"[{args.host}]" if ":" in args.host else args.host
        link = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
        print(f"llmpipe-tools ui: {link}   (runs from {', '.join(map(str, folders))}; Ctrl+C stops)", flush=True)

    _announce_after_start(server, announce)
    server.run()
    return 0


def _announce_after_start(server, announce) -> None:
    original = server.startup

    async def startup(*a, **kw):
        await original(*a, **kw)
        if server.started:
            announce()

    server.startup = startup
