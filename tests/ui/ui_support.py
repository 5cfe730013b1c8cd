"""What the UI tests share: the page served by uvicorn in a thread (on a free port), and headless Chromium
from Debian's package driven by Playwright (the tests skip, saying how to get it, when it is missing)."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def served(roots: list[Path], token: str | None = None, hosts: list[str] | None = None):
    """The app of ``llmpipe-tools ui`` on 127.0.0.1 and a free port; yields its base URL."""
    import uvicorn

    from llmpipe.tools.ui.app import build_app

    server = uvicorn.Server(uvicorn.Config(build_app(roots, token=token, hosts=hosts), host="127.0.0.1", port=0,
                                           log_level="warning", access_log=False))
    server.install_signal_handlers = lambda: None   # not the main thread (older uvicorn)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the UI server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def browser_or_skip():
    """(playwright context manager, launched browser); skips when Chromium or Playwright is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM}: `apt-get install chromium` "
                    "(.ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need Playwright: `pip install -e '.[test]'` (its own browser download is "
                    "not used: Chromium comes from `apt-get install chromium`)")
    manager = sync_playwright()
    pw = manager.start()
    return manager, pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def shot(page, name: str) -> None:
    """A screenshot for docs/ui.md when LLMPIPE_UI_SHOTS names a folder (docs/images/ui is refreshed so)."""
    folder = os.environ.get("LLMPIPE_UI_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = Path(folder) / f"{name}.png"
        page.screenshot(path=str(path))
        try:   # a palette PNG is a third of the size: these are committed as docs
            from PIL import Image
        except ImportError:
            return
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)
