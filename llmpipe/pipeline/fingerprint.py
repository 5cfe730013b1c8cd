"""Stage fingerprints: what a stage reads, hashed together with its upstream fingerprints, the identity
of its inputs and the stage's code version. Volatile keys (run.*, hydra.*, logging, output paths, hub
tokens: fields declared ``volatile``) never take part."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from llmpipe.config.flags import flag_table
from llmpipe.pipeline.identity import Identities

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


def data_identities(cfg) -> dict[str, str]:
    from llmpipe.config.typed import split_list
    from llmpipe.data.registry import data_identity, find_dataset

    out = {}
    for key in ("dataset", "eval_dataset"):
        for name in split_list(cfg.data.get(key)):   # the DictConfig keeps the list flag's string
            spec = find_dataset(name, cfg.data.dataset_dir)
            out[f"data:{name}"] = data_identity(spec) if spec else f"unknown:{name}"
    return out


def compute_fingerprints(plan: Any, cache_root: Path) -> None:
    """Fill every node's reads, input identities and fingerprint, in plan order (upstream first)."""
    ids = Identities(cache_root)
    for node in plan.nodes:
        node.reads = read_values(node.cfg, node.kind.reads, node.kind.ignores)
        node.identities = {}
        if node.kind.name == "load":
            if "base" not in node.inputs:
                node.identities["model"] = ids.model(str(node.cfg.model.name_or_path), node.cfg.model.model_revision)
            node.identities.update(data_identities(node.cfg))
        if node.kind.name in ("merge", "quantize"):   # given adapters and calibration files, by content
            from llmpipe.exporting.identity import stage_identities

            node.identities.update(stage_identities(node, ids))
        if node.kind.name == "mc_eval":   # the questions of eval.task, by content
            from llmpipe.data.mc_tasks import task_identity

            node.identities["eval_task"] = task_identity(str(node.cfg.eval.task), str(node.cfg.eval.task_dir))
        if node.kind.distributed:   # the content of the DeepSpeed JSON, not just its path
            from llmpipe.launch.stage import launch_identities

            node.identities.update(launch_identities(node.cfg))
        upstream = {role: plan.node(uid).fingerprint for role, uid in node.inputs.items()}
        node.fingerprint = fingerprint(node.kind.name, node.kind.version, node.reads, upstream, node.identities)
    ids.save()
