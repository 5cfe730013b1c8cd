"""Generic per-field checks driven by the field metadata: enums (with old spellings), ranges.

Types are enforced by OmegaConf when the config is composed; this adds what types cannot say.
"""
from __future__ import annotations

import difflib
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


def check_value(path: str, meta: ParamMeta, value: Any) -> list[Problem]:
    if value is None:
        return []
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
