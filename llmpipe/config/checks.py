"""Generic per-field checks driven by the field metadata: enums (with old spellings), ranges.

Types are enforced by OmegaConf when the config is composed; this adds what types cannot say.
"""
from __future__ import annotations

import difflib
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llmpipe.config.meta import ParamMeta
from llmpipe.problems import Problem


def _allowed_text(meta: ParamMeta) -> str:
    return ", ".join(str(c) for c in meta.choices or ())


def normalize_value(path: str, meta: ParamMeta, value: Any, notes: list[str]) -> Any:
    """Map an old spelling to its canonical value (e.g. quantization.method bitsandbytes -> bnb)."""
    if meta.value_aliases and isinstance(value, str) and value in meta.value_aliases:
        new = meta.value_aliases[value]
        notes.append(f"{path}: '{value}' is the older spelling of '{new}'; using '{new}'")
        return new
    return value


INT64 = 2 ** 63


def check_value(path: str, meta: ParamMeta, value: Any) -> list[Problem]:
    if value is None:
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return [Problem(path, value, "not a finite number", "a finite number", "", rule="finite")]
    if isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
        return [Problem(path, value, "too large: it does not fit in a 64-bit integer", "", "", rule="range")]
    if meta.list_sep and isinstance(value, str):
        return _list_items(path, meta, value)
    out: list[Problem] = []
    if meta.choices is not None and value not in meta.choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in meta.choices], n=1)
        fix = f"{path}={close[0]}" if close else f"pick one of the allowed values"
        out.append(Problem(path, value, "not an allowed value", _allowed_text(meta), fix, rule="enum"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        bounds = []
        ok = True
        if meta.ge is not None:
            bounds.append(f">= {meta.ge}")
            ok &= value >= meta.ge
        if meta.gt is not None:
            bounds.append(f"> {meta.gt}")
            ok &= value > meta.gt
        if meta.le is not None:
            bounds.append(f"<= {meta.le}")
            ok &= value <= meta.le
        if meta.lt is not None:
            bounds.append(f"< {meta.lt}")
            ok &= value < meta.lt
        if not ok:
            out.append(Problem(path, value, "out of range", " and ".join(bounds), "", rule="range"))
    return out


def _list_items(path: str, meta: ParamMeta, value: str) -> list[Problem]:
    """A list flag (comma-separated) has no empty item: ``a,,b``, ``a,`` or a blank value are typos that would
    otherwise be dropped without a word."""
    sep = meta.list_sep or ","
    if not value:
        return []
    items = value.split(sep)
    if not value.strip():
        return [Problem(path, value, "is blank", "names separated by '" + sep + "'", f"{path}=null", rule="list-items")]
    if any(not item.strip() for item in items):
        kept = sep.join(i.strip() for i in items if i.strip())
        return [Problem(path, value, f"has an empty item ('{sep}' twice in a row, or at an end)",
                        "items separated by '" + sep + "'", f"{path}={kept}", rule="list-items")]
    return [p for item in items for p in _choice(path, meta, item.strip())]


def _choice(path: str, meta: ParamMeta, item: str) -> list[Problem]:
    if meta.choices is None or item in meta.choices:
        return []
    close = difflib.get_close_matches(item, [str(c) for c in meta.choices], n=1)
    return [Problem(path, item, "not an allowed value", _allowed_text(meta),
                    f"{path}={close[0]}" if close else "pick one of the allowed values", rule="enum")]


def normalize_and_check(cfg: DictConfig, table) -> tuple[list[Problem], list[str]]:
    """Normalise aliases in place and run the per-field checks for every parameter of the table."""
    problems: list[Problem] = []
    notes: list[str] = []
    for entry in table.params():
        parent, key = _parent(cfg, entry.path)
        if parent is not None and parent._get_node(key)._is_missing():
            continue
        value = parent[key] if parent is not None else None
        new = normalize_value(entry.path, entry.meta, value, notes)
        if new is not value:
            if parent is not None:
                parent[key] = new
            else:
                OmegaConf.update(cfg, entry.path, new, merge=False)
            value = new
        problems.extend(check_value(entry.path, entry.meta, value))
    return problems, notes


def _parent(cfg: DictConfig, path: str) -> tuple[DictConfig | None, str]:
    """The config node holding ``path``'s last key, and that key; (None, key) when the path does not exist.
    One walk per parameter (OmegaConf.select / is_missing / update each walk the dotted path again)."""
    node = cfg
    *parents, key = path.split(".")
    for part in parents:
        if not isinstance(node, DictConfig) or part not in node:
            return None, key
        node = node._get_node(part)
    if not isinstance(node, DictConfig) or key not in node:
        return None, key
    return node, key
