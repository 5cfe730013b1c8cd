"""Run one command and measure it: wall time, exit code, peak RSS, CPU time, load average.

Peak RSS is measured two ways: ``peak_rss_mib`` is ``ru_maxrss`` from ``wait4`` (what ``/usr/bin/time -v``
reports: the largest resident set of the process or any descendant it waited for), ``tree_rss_mib`` the
largest sum of RSS over the whole process tree, polled every 50 ms with psutil. ``cpu_s`` is user + system
CPU time of the process and its descendants; on a loaded machine it inflates far less than wall time.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def _poll_tree(pid: int, stop: threading.Event, peak: list) -> None:
    try:
        import psutil
    except ImportError:   # the wait4 figure is still there
        return
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        try:
            procs = [root] + root.children(recursive=True)
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total)
        except psutil.Error:
            return
        stop.wait(0.05)


def run(cmd: list[str], log_path: Path, *, env: dict | None = None, cwd: Path | None = None,
        timeout: float = 1800.0) -> dict:
    """Run ``cmd`` (stdout+stderr to ``log_path``) and return its measurements."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    before = load1()
    with open(log_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                cwd=str(cwd) if cwd else None, start_new_session=True)
        stop, peak = threading.Event(), [0]
        poller = threading.Thread(target=_poll_tree, args=(proc.pid, stop, peak), daemon=True)
        poller.start()
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        stop.set()
        poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = log_path.read_text(errors="replace")
    return {
        "cmd": " ".join(str(c) for c in cmd),
        "rc": proc.returncode,
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "tree_rss_mib": round(peak[0] / 2**20, 1),
        "load_before": before,
        "load_after": load1(),
        "traceback": "Traceback (most recent call last)" in text,
        "output_lines": text.count("\n"),
        "log": str(log_path),
        "timed_out": proc.returncode == -signal.SIGKILL and wall >= timeout,
    }
