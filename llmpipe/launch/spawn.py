"""Run the launcher for one node, forward rank 0's progress lines, and turn a failure into one clear
message naming the failing rank and showing its error (its exception, or its signal and last log lines).
Import-light (no torch)."""
from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Callable, Iterable

from llmpipe.errors import UserError
from llmpipe.launch.worker import LOG_MARK
from llmpipe.processes import dies_with_parent

_RANK_PREFIX = re.compile(r"^\[(?:default|rank)?(\d+)\]:")
_ROOT_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\).*?exitcode\s*:\s*(-?\d+)", re.S)


class LaunchError(UserError):
    """A rank of a distributed stage failed (the message names the rank and shows its error)."""


def run_launcher(argv: list[str], env: dict[str, str], *, launch_dir: Path, log_dir: Path | None,
                 say: Callable[[str], None], tail_lines: int = 60) -> None:
    """Run ``argv``; lines the ranks mark with LOG_MARK go to ``say``; raise LaunchError on failure."""
    tail: collections.deque[str] = collections.deque(maxlen=400)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", bufsize=1, preexec_fn=dies_with_parent())
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = _RANK_PREFIX.sub("", raw.rstrip("\n"), count=1)
            if line.startswith(LOG_MARK):
                say(line[len(LOG_MARK):])
            else:
                tail.append(line)
        rc = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if rc != 0:
        headline, details = failure_report(rc, "\n".join(tail), launch_dir, log_dir, tail_lines=tail_lines)
        for line in details:
            say(line)
        raise LaunchError(headline)


def failure_report(rc: int, output: str, launch_dir: Path, log_dir: Path | None, *,
                   tail_lines: int = 60) -> tuple[str, list[str]]:
    """(one-line summary, detail lines): which rank failed first and why - torchrun's root cause, then that
    rank's error record (exception and traceback) or, for a rank that was killed, its last log lines."""
    from llmpipe.secrets import redact_text

    errors = _error_records(launch_dir / "errors")
    root = _ROOT_CAUSE.search(output)
    rank = local_rank = exitcode = None
    if root:
        rank, local_rank, exitcode = (int(g) for g in root.groups())
    elif errors:
        rank = min(errors, key=lambda r: errors[r].get("time", 0))
        local_rank = errors[rank].get("local_rank")
    details: list[str] = []
    if rank is None:
        what = f"the launcher exited with code {rc} before any rank reported an error"
        details += ["last lines of the launcher output:"] + _indent(output.splitlines()[-tail_lines:])
    else:
        record = errors.get(rank)
        if record:
            what = f"rank {rank} failed: {record['type']}: {_first_line(record['message'])}"
            details += [f"rank {rank}'s error:"] + _indent(record.get("traceback", [])[-15:])
        else:
            what = f"rank {rank} failed: {_exit_text(exitcode)}"
            log_tail = _rank_log_tail(log_dir, local_rank, tail_lines)
            if log_tail:
                details += [f"last lines of rank {rank}'s output:"] + _indent(log_tail)
        others = sorted(r for r in errors if r != rank)
        if others:
            details.append("then: " + "; ".join(f"rank {r}: {errors[r]['type']}: {_first_line(errors[r]['message'])}"
                                              for r in others[:4]))
    where = log_dir if log_dir is not None else launch_dir
    return redact_text(f"{what} (logs of every rank: {where})"), [redact_text(d) for d in details]


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exited with an error"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} (exit code {code})"
    return f"exited with code {code}"


def _error_records(folder: Path) -> dict[int, dict]:
    out = {}
    for p in sorted(folder.glob("rank-*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
            out[int(rec["rank"])] = rec
        except (OSError, ValueError, KeyError):
            continue
    return out


def _rank_log_tail(log_dir: Path | None, local_rank: int | None, n: int) -> list[str]:
    """The last lines of a local rank's stderr (then stdout) under torchrun's --log-dir."""
    if log_dir is None or local_rank is None or not log_dir.is_dir():
        return []
    for name in ("stderr.log", "stdout.log"):
        files = sorted(log_dir.glob(f"*/attempt_*/{local_rank}/{name}"), key=lambda p: p.stat().st_mtime)
        if files:
            text = files[-1].read_text(encoding="utf-8", errors="replace").splitlines()
            text = [t for t in text if t.strip()]
            if text:
                return text[-n:]
    return []


def _indent(lines: Iterable[str]) -> list[str]:
    return ["    " + line for line in lines]


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
