"""The typed object of a composed config: ``typed(cfg)`` is the one place a DictConfig becomes an
:class:`~llmpipe.config.root.LlmpipeConfig` (pre-flight validation, the runner, a launched rank).

List flags (fields declared with ``param(..., list_sep=",")``) stay comma-separated strings in the DictConfig,
so the YAML, the lock file and the fingerprints keep them as written (Hydra would read ``data.dataset=a,b``
on the command line as a sweep). The typed object holds them as ``list[str]``: stripped, empty items
dropped, unset (None) or "" -> []. They are split here, once; code reads the list.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from llmpipe.config.flags import flag_table

if TYPE_CHECKING:
    from llmpipe.config.root import LlmpipeConfig


def split_list(value: Any, sep: str = ",") -> list[str]:
    """A list flag's value as a list: the stripped, non-empty items of a ``sep``-separated string (or list)."""
    if value is None:
        return []
    items = value.split(sep) if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    return [str(v).strip() for v in items if str(v).strip()]


@functools.lru_cache(maxsize=1)
def list_flags() -> dict[str, str]:
    """``{config path: separator}`` of every list flag."""
    return {p.path: p.meta.list_sep for p in flag_table().params() if p.meta.list_sep}


def typed(cfg: DictConfig) -> LlmpipeConfig:
    """``OmegaConf.to_object(cfg)`` with every list flag split into ``list[str]`` (``cfg`` is left as it is).
    A config without the schema (a plain DictConfig) gives plain dicts, with the same splitting."""
    obj = OmegaConf.to_object(cfg)
    for path, sep in list_flags().items():
        *parents, name = path.split(".")
        node: Any = obj
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if isinstance(node, dict):
            if name in node:
                node[name] = split_list(node[name], sep)
        elif node is not None and hasattr(node, name):
            setattr(node, name, split_list(getattr(node, name), sep))
    return obj
