"""Stage fingerprints: what a stage reads, hashed together with its upstream fingerprints, the identity
of its inputs and the stage's code version. Volatile keys (run.*, hydra.*, logging, output paths, hub
tokens: fields declared ``volatile``) never take part."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from llmpipe.config.flags import flag_table

FORMAT = 1  # bump when the fingerprint recipe itself changes


def read_paths(reads: Iterable[str], ignores: Iterable[str] = ()) -> list[str]:
    """Expand declared reads (a family like ``lora`` or a path like ``data.cutoff_len``) into the
    non-volatile parameter paths they cover, less the ones the stage declares it ignores."""
    out: list[str] = []
    ignored = set(ignores)
    for p in flag_table().params():
        if p.meta.volatile or p.path in ignored:
            continue
        for r in reads:
            if p.path == r or p.path.startswith(r + "."):
                out.append(p.path)
                break
    return sorted(out)


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def read_values(cfg: DictConfig, reads: Iterable[str], ignores: Iterable[str] = ()) -> dict[str, Any]:
    values = {}
    for path in read_paths(reads, ignores):
        values[path] = _plain(OmegaConf.select(cfg, path, default=None))
    return values


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def fingerprint(kind: str, version: str, values: Mapping[str, Any], upstream: Mapping[str, str],
                inputs: Mapping[str, str]) -> str:
    payload = {
        "format": FORMAT,
        "kind": kind,
        "version": version,
        "reads": dict(values),
        "upstream": dict(upstream),
        "inputs": dict(inputs),
    }
    return hashlib.sha256(canonical(payload).encode()).hexdigest()
