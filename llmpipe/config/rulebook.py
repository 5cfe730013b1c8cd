"""The registry of cross-field pre-flight rules: each rule names its keys and carries override lists that
must (``bad``) and must not (``good``) trigger it; tests run them all. Rules are registered by importing
their modules (llmpipe.config.rules, llmpipe.data.rules); llmpipe.pipeline.preflight imports them all."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from llmpipe.config.environment import Environment
from llmpipe.problems import Problem

RuleFn = Callable[[Any, Environment], Iterable[Problem]]


@dataclass
class Rule:
    id: str
    keys: tuple[str, ...]
    fn: RuleFn
    bad: list[list[str]]          # override lists that must trigger the rule (tests use them)
    good: list[list[str]]         # override lists close to `bad` that must not
    env: dict = field(default_factory=dict)   # Environment fields the examples assume (e.g. gpu_count)
    doc: str = ""


RULES: dict[str, Rule] = {}


def rule(id: str, *, keys: Sequence[str], bad: list[list[str]], good: list[list[str]], env: dict | None = None):
    """Register a cross-field rule. ``bad``/``good`` are override lists relative to a minimal valid config."""

    def deco(fn: RuleFn) -> RuleFn:
        if id in RULES:
            raise RuntimeError(f"rule {id} registered twice")
        RULES[id] = Rule(id, tuple(keys), fn, bad, good, env or {}, (fn.__doc__ or "").strip())
        return fn

    return deco
