"""The flag table: every parameter's config path, type, default and seed-flag names, derived from the
family dataclasses (the table is code; docs/parameters.md is generated from it)."""
from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from dataclasses import dataclass
from typing import Any, Iterator

from llmpipe.config.meta import ParamMeta, iter_params
from llmpipe.hydra_speedups import type_hints


@dataclass(frozen=True)
class Param:
    path: str
    type: str
    default: Any
    meta: ParamMeta

    @property
    def family(self) -> str:
        return self.path.split(".", 1)[0]


@dataclass(frozen=True)
class FlagRef:
    """A seed flag resolved to its config path; ``negated`` for ``--no_<flag>`` forms."""
    flag: str
    param: Param
    negated: bool = False


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return f"{_type_name(rest[0])} | None" if len(rest) == 1 else "any"
    if origin in (list, typing.List):
        return f"list[{_type_name(args[0]) if args else 'any'}]"
    if origin in (dict, typing.Dict):
        return "dict"
    if tp is typing.Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return "???"


class FlagTable:
    def __init__(self, root: type):
        self._params: dict[str, Param] = {}
        for path, f, meta, owner in iter_params(root):
            hints = type_hints(owner)
            self._params[path] = Param(path, _type_name(hints[f.name]), _default_of(f), meta)
        self._by_flag: dict[str, Param] = {}
        for p in self._params.values():
            for flag in p.meta.seed:
                if flag in self._by_flag:
                    raise RuntimeError(f"seed flag {flag} is declared twice ({self._by_flag[flag].path}, {p.path})")
                self._by_flag[flag] = p

    def params(self) -> Iterator[Param]:
        return iter(self._params.values())

    def by_path(self, path: str) -> Param | None:
        return self._params.get(path)

    def default(self, path: str, missing: Any = None) -> Any:
        """The schema default of ``path``; ``missing`` when ``path`` is not a parameter."""
        p = self._params.get(path)
        return missing if p is None else p.default

    def by_flag(self, name: str) -> FlagRef | None:
        flag = name.lstrip("-").replace("-", "_")
        if flag in self._by_flag:
            return FlagRef(flag, self._by_flag[flag])
        if flag.startswith("no_") and flag[3:] in self._by_flag:
            p = self._by_flag[flag[3:]]
            if p.type.startswith("bool"):
                return FlagRef(flag, p, negated=True)
        return None

    def flags(self) -> list[str]:
        return sorted(self._by_flag)

    def lookup(self, name: str) -> FlagRef | None:
        """A config path or a seed flag (``--lora_rank``, ``lora-rank``, ``no_use_cache``)."""
        p = self.by_path(name)
        if p is not None:
            return FlagRef(name, p)
        return self.by_flag(name)

    def suggest(self, name: str, n: int = 5) -> list[str]:
        pool = list(self._params) + list(self._by_flag)
        key = name.lstrip("-").replace("-", "_")
        found = difflib.get_close_matches(key, pool, n=n, cutoff=0.5)
        leaf = key.rsplit(".", 1)[-1]
        found += [p for p in self._params if p.endswith("." + leaf) and p not in found]
        return found[:n]


@functools.lru_cache(maxsize=1)
def flag_table() -> FlagTable:
    from llmpipe.config.root import LlmpipeConfig

    return FlagTable(LlmpipeConfig)
