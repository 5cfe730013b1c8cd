"""What must never reach the console of a run (docs/console.md): library banners, "Failed to load" lines that are
not failures of the run, raw library log lines and deprecation chatter. Library warnings appear once each, as
``llmpipe: warning from <library>: ...``; the full library output is in the job's llmpipe.log."""
from __future__ import annotations

import re

NOISE = {
    "GPT-QModel banner": re.compile(r"GPT-QModel|┌─|Python GIL is enabled|Auto setting PYTORCH_ALLOC_CONF"),
    "Failed to load": re.compile(r"Failed to load"),
    "raw transformers log line": re.compile(r"^\[transformers\]", re.M),
    "deprecation chatter": re.compile(r"FutureWarning|DeprecationWarning"),
    "context-length warning": re.compile(r"Token indices sequence length is longer"),
    "a raw warnings.warn line": re.compile(r"^\S+\.py:\d+: \w+Warning:", re.M),
}


def noisy_lines(text: str) -> dict[str, list[str]]:
    """{what: the offending lines} for every NOISE pattern found in ``text``."""
    found = {}
    for what, pattern in NOISE.items():
        lines = [ln for ln in text.splitlines() if pattern.search(ln)]
        if lines:
            found[what] = lines[:5]
    return found


def assert_quiet(proc) -> None:
    """The console of a finished CLI run (stdout and stderr) is free of NOISE, and each attributed library
    warning appears once."""
    text = proc.stdout + proc.stderr
    assert not noisy_lines(text), noisy_lines(text)
    warned = [ln for ln in text.splitlines() if ln.startswith("llmpipe: warning from ")]
    assert len(warned) == len(set(warned)), warned
