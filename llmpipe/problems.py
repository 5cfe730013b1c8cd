"""What a failed pre-flight check reports, and how it is printed."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from llmpipe.errors import UserError

EXIT_CONFIG_ERROR = 2
NO_VALUE = Ellipsis   # a problem about a file or a whole section rather than one value


@dataclass(frozen=True)
class Problem:
    key: str                      # config path, e.g. "pref.loss" (several keys: "a + b")
    value: Any                    # the offending value as composed
    message: str                  # what is wrong, in one sentence
    allowed: str = ""             # what would be accepted
    fix: str = ""                 # how to fix it, ideally an override to paste
    rule: str = ""                # id of the rule that found it

    def render(self) -> str:
        shown = "" if self.value is NO_VALUE else f" = {_show(_shown_value(self.key, self.value))}"
        lines = [f"  x {self.key}{shown}: {self.message}"]
        if self.allowed:
            lines.append(f"      allowed: {self.allowed}")
        if self.fix:
            lines.append(f"      fix:     {self.fix}")
        return "\n".join(lines)


class ConfigError(UserError):
    """Raised (and caught by the entry points) when the configuration cannot run."""

    exit_code = EXIT_CONFIG_ERROR

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__(format_problems(self.problems))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    return str(value)


_SECRET_LEAF = re.compile(r"hub_?tok|secret|passw|api_?key|(^|_)tokn?$", re.IGNORECASE)


def _shown_value(key: str, value: Any) -> Any:
    """The value of a secret key is never shown, nor that of a misspelt one (``model.hf_hub_tokn``)."""
    from llmpipe.secrets import REDACTED, secret_paths

    leaves = {p.rsplit(".", 1)[-1] for p in secret_paths()}
    for k in str(key).split("+"):
        leaf = k.strip().rsplit(".", 1)[-1]
        if value is not None and (leaf in leaves or _SECRET_LEAF.search(leaf)):
            return REDACTED
    return value


def format_problems(problems: Iterable[Problem]) -> str:
    problems = list(problems)
    n = len(problems)
    head = f"llmpipe: the configuration has {n} problem{'s' if n != 1 else ''} (nothing was run or written):"
    body = "\n".join(p.render() for p in problems)
    tail = "  (llmpipe-tools explain <key> describes any parameter)"
    from llmpipe.secrets import redact_text

    return redact_text(f"{head}\n{body}\n{tail}")   # a problem may quote a secret's value


def exit_with(problems: Sequence[Problem]) -> None:
    """Print the problems to stderr and exit with code 2: no traceback unless HYDRA_FULL_ERROR=1. Exiting
    (rather than raising) matters: Hydra turns exceptions in callbacks into warnings and goes on."""
    import os

    if os.environ.get("HYDRA_FULL_ERROR") == "1":   # where the check was called from, for debugging
        import traceback

        print("Traceback (most recent call last):", file=sys.stderr)
        traceback.print_stack(file=sys.stderr)
    print(format_problems(problems), file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG_ERROR)
