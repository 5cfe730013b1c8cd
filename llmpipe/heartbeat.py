"""A heartbeat for silent work: while a call that prints nothing runs (building a model, tokenizing, verifying an
export in a fresh process, GPTQ, a push), it shows that it is alive and about how long it has left. A
foundation module (no llmpipe imports), so that every layer's long calls can use it."""
from __future__ import annotations

import sys
import threading
import time

HEARTBEAT_S = 15        # plain lines (CI, log files) every HEARTBEAT_S seconds; a terminal's line every second


class Heartbeat:
    """While a silent call runs, shows that it is alive and about how long it has left (``usual_s``: the usual
    duration, if known): one line rewritten in place on a terminal, a plain line every ``HEARTBEAT_S`` seconds
    otherwise (nothing at all for a call shorter than that)."""

    def __init__(self, what: str, usual_s: float | None = None, stream=None):
        self.what, self.usual_s = what, usual_s
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmpipe-heartbeat", daemon=True)

    def line(self, elapsed: float) -> str:
        if self.usual_s is None:   # no estimate: the time spent only
            return f"    {self.what} ... {elapsed:.0f} s"
        left = self.usual_s - elapsed
        eta = f"about {left:.0f} s left" if left >= 1 else f"longer than the usual {self.usual_s:.0f} s: a busy machine"
        return f"    {self.what} ... {elapsed:.0f} s ({eta}; about {self.usual_s:.0f} s on 2 CPU cores)"

    def _run(self) -> None:
        t0 = time.monotonic()
        period = 1.0 if self.tty else HEARTBEAT_S
        while not self._stop.wait(period):
            text = self.line(time.monotonic() - t0)
            self.stream.write(f"\r{text}\x1b[K" if self.tty else text + "\n")
            self.stream.flush()
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False
