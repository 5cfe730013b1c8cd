"""Identities of the export stages' external inputs, for their fingerprints (torch-free, plan time):
the content of the adapters a merge stage reads from model.adapter_name_or_path, and of the calibration
dataset a quantize stage reads. Without them an adapter or a calibration file edited in place would not
re-run the stage. The runner adds them with ``node.identities.update(stage_identities(node, ids))``."""
from __future__ import annotations

from typing import Any


def stage_identities(node: Any, ids: Any) -> dict[str, str]:
    """``{name: identity}`` for ``node`` (a plan Node); ``ids`` is the runner's Identities memo."""
    from omegaconf import OmegaConf

    cfg = node.cfg
    out: dict[str, str] = {}
    if node.kind.name == "merge":
        from llmpipe.config.typed import split_list

        for ref in split_list(OmegaConf.select(cfg, "model.adapter_name_or_path")):   # node.cfg keeps the string
            out[f"adapter:{ref}"] = ids.model(ref, OmegaConf.select(cfg, "model.model_revision"))
    if node.kind.name == "quantize":
        from llmpipe.data.errors import DataError
        from llmpipe.data.registry import data_identity, find_dataset

        name = OmegaConf.select(cfg, "export.quantization_dataset")
        if name:
            try:
                spec = find_dataset(str(name), OmegaConf.select(cfg, "data.dataset_dir"))
            except DataError:
                spec = None
            out[f"calibration:{name}"] = data_identity(spec) if spec else f"unknown:{name}"
    return out
