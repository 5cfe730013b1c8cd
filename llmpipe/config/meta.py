"""Field metadata: every configuration field carries its own documentation and rules.

A family is a dataclass whose fields are declared with :func:`param`. The metadata attached here is the
single source for the flag table (seed flag <-> config path), ``docs/parameters.md``, ``llmpipe-tools
explain`` and the generic type/range/enum checks in :mod:`llmpipe.config.checks`.

This module must stay import-light (no torch, no transformers).
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

_KEY = "llmpipe"

# A list flag (``param(..., list_sep=",")``) is one comma-separated string in the schema, in YAML, in the lock
# file and in fingerprints: Hydra would read ``data.dataset=a,b`` on the command line as a sweep. The typed
# object (llmpipe.config.typed.typed) holds it as ``list[str]`` (stripped, empty items dropped, unset -> []).
# The two hints say both: OmegaConf and Hydra see the string, a type checker sees the list code reads.
if TYPE_CHECKING:
    ListFlag = list[str]
    OptionalListFlag = list[str]
else:
    ListFlag = str
    OptionalListFlag = Optional[str]


@dataclasses.dataclass(frozen=True)
class ParamMeta:
    help: str
    seed: tuple[str, ...] = ()          # LLaMA-Factory / seed-document flag names that map here
    choices: tuple[Any, ...] | None = None
    value_aliases: Mapping[str, Any] | None = None   # old spelling -> canonical value
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    secret: bool = False
    deprecated: str | None = None       # how an old flag is translated (shown by explain)
    seed_default: Any = None            # the older document's default where it disagrees
    volatile: bool = False              # never part of a fingerprint (paths, logging, run control)
    gpu_only: bool = False              # every non-default value is refused on a machine without a CUDA GPU
    list_sep: str | None = None         # a list flag: this separator splits it in the typed object
    # "none: <reason>" for a parameter that is accepted and acts on nothing by design (reviewed list: the
    # flag-effect test, tests/unit/config/test_flag_effects.py, proves every other one acts or is refused)
    effect: str | None = None


def param(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    seed: str | Sequence[str] | None = None,
    choices: Sequence[Any] | None = None,
    value_aliases: Mapping[str, Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    secret: bool = False,
    deprecated: str | None = None,
    seed_default: Any = None,
    volatile: bool = False,
    list_sep: str | None = None,
    gpu_only: bool = False,
    effect: str | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare a configuration field with its documentation and constraints."""
    if not help:
        raise ValueError("every parameter needs a one-line help text")
    if effect is not None and not (effect.startswith("none: ") and len(effect) > len("none: ")):
        raise ValueError(f"effect must be 'none: <reason>', not {effect!r}")
    seeds = (seed,) if isinstance(seed, str) else tuple(seed or ())
    meta = ParamMeta(
        help=help, seed=seeds, choices=tuple(choices) if choices is not None else None,
        value_aliases=dict(value_aliases) if value_aliases else None, ge=ge, gt=gt, le=le, lt=lt,
        secret=secret, deprecated=deprecated, seed_default=seed_default, volatile=volatile,
        list_sep=list_sep, gpu_only=gpu_only, effect=effect,
    )
    md = {_KEY: meta}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=md)
    return field(default=default, metadata=md)


def meta_of(f: dataclasses.Field) -> ParamMeta | None:
    return f.metadata.get(_KEY)


def iter_params(cls: type, prefix: str = ""):
    """Yield ``(path, field, meta, owner_class)`` for every leaf parameter of a dataclass tree."""
    for f in dataclasses.fields(cls):
        typ = f.type if not isinstance(f.type, str) else _resolve(cls, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(typ):
            yield from iter_params(typ, prefix=path + ".")
            continue
        m = meta_of(f)
        if m is not None:
            yield path, f, m, cls


def _resolve(cls: type, name: str) -> Any:
    from llmpipe.hydra_speedups import type_hints

    hints = type_hints(cls)
    return hints[name]
