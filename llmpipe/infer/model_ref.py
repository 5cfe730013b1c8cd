"""Which model to talk to: the final model of a run (its export folder, the merge stage's model/, or the train
stage's model/ or adapter/ on top of its base), found in a finished run's outputs or in the store, or the
base model of a configuration (``model.name_or_path`` + ``model.adapter_name_or_path``). No torch here."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from llmpipe.config.families.export import EXPORT_MARKER
from llmpipe.data.published import read_source

# Stage kinds whose output is a model, latest first in a plan (a quantize stage publishes model/ too).
MODEL_KINDS = ("export", "quantize", "merge", "train")


@dataclass(frozen=True)
class ModelRef:
    model: str                                  # folder or hub id of the full (or base) model
    tokenizer: str                              # folder or hub id of its tokenizer
    adapters: tuple[str, ...] = field(default_factory=tuple)   # LoRA adapters put on top, in order
    origin: str = ""                            # what this is, for people ("trained: merge 3fa2...")
    trained: bool = False                       # a result of the pipeline (not the configured base model)

    def describe(self) -> str:
        extra = f" + adapter {', '.join(self.adapters)}" if self.adapters else ""
        return f"{self.origin}: {self.model}{extra}"


def from_node_output(node, out: Path, load_dir: Callable[[str], Path | None]) -> ModelRef | None:
    """The model published by ``node`` in folder ``out`` (None when it holds no model)."""
    kind = node.kind.name
    label = f"trained ({node.id} {node.fingerprint[:10]})" if node.fingerprint else f"trained ({node.id})"
    if kind == "export":
        return ModelRef(str(out), str(out), origin=f"exported ({node.id})", trained=True)
    if (out / "model").is_dir():
        return ModelRef(str(out / "model"), str(out / "model"), origin=label, trained=True)
    if (out / "adapter").is_dir() and "load" in node.inputs:
        base_dir = load_dir(node.inputs["load"])
        if base_dir is None:
            return None
        return ModelRef(read_source(base_dir), str(out / "adapter"), (str(out / "adapter"),), origin=label,
                        trained=True)
    return None


def final_model(plan, outputs: dict[str, Path]) -> ModelRef | None:
    """The last model a finished run produced (``outputs``: node id -> published folder)."""
    for node in reversed(plan.nodes):
        if node.kind.name in MODEL_KINDS and node.id in outputs:
            ref = from_node_output(node, Path(outputs[node.id]), lambda nid: outputs.get(nid))
            if ref is not None:
                return ref
    return None


def find_in_store(plan, store) -> ModelRef | None:
    """The plan's final model when the store (or export.dir) already holds it; fingerprints must be computed."""
    def complete(node_id: str) -> Path | None:
        node = plan.node(node_id)
        entry = store.entry(node.kind.name, node.fingerprint)
        return entry.path if entry.complete() else None

    for node in reversed(plan.nodes):
        if node.kind.name not in MODEL_KINDS:
            continue
        if node.kind.name == "export":
            out = _export_dir(node)
        else:
            out = complete(node.id)
        if out is not None:
            ref = from_node_output(node, out, complete)
            if ref is not None:
                return ref
    return None


def _export_dir(node) -> Path | None:
    from omegaconf import OmegaConf

    dest = Path(str(OmegaConf.select(node.cfg, "export.dir"))).expanduser().absolute()
    try:
        done = json.loads((dest / EXPORT_MARKER).read_text()).get("fingerprint") == node.fingerprint
    except (OSError, ValueError):
        return None
    return dest if done else None


def base_model(obj: Any, cache_root: str | Path) -> ModelRef:
    """The configured model: ``model.name_or_path`` (built-in models are built) + its adapters."""
    from llmpipe.config.rules._common import adapters
    from llmpipe.models.loading import resolve_source

    source = resolve_source(str(obj.model.name_or_path), Path(cache_root))
    return ModelRef(source, source, tuple(adapters(obj)), origin=f"base model {obj.model.name_or_path}")


def from_stage_inputs(obj: Any, load_dir: Path, model_dir: Path | None) -> ModelRef:
    """For predict/evaluate: the upstream model (train or merge output), else the configured base model of the
    load stage (with ``model.adapter_name_or_path``). The tokenizer is always the load stage's: it carries
    the chat template the data was rendered with."""
    from llmpipe.config.rules._common import adapters

    tok = str(Path(load_dir) / "tokenizer")
    if model_dir is not None:
        if (model_dir / "model").is_dir():
            return ModelRef(str(model_dir / "model"), tok, origin="trained model", trained=True)
        if (model_dir / "adapter").is_dir():
            return ModelRef(read_source(load_dir), tok, (str(model_dir / "adapter"),), origin="trained adapter",
                            trained=True)
        raise FileNotFoundError(f"{model_dir} holds neither model/ nor adapter/")
    return ModelRef(read_source(load_dir), tok, tuple(adapters(obj)), origin="base model")
