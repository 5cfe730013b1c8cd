"""What pre-flight can know about a model without loading a weight: its config.json (depth, hidden size) and,
when a rule needs module names, an instance on the meta device (no memory, no weights, no download).

Sources: a built-in model's spec (the text built-ins, the architecture zoo, and the vision-language built-ins
``builtin:tiny_vl`` and the vision-language zoo, whose config is made without building them), a local folder's
config.json, or the hub cache's snapshot of a hub id.
A model whose config asks for remote code is not instantiated here (that runs the folder's Python)."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmpipe.models import tiny, vision_builtin, vlm_zoo, zoo

_DEPTH_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


@dataclass(frozen=True)
class ModelFacts:
    ref: str
    config: dict[str, Any]       # config.json's content
    folder: Path | None = None   # where its files are, when local

    def _text(self) -> dict[str, Any]:
        """The language model's part of the config (a vision-language model nests it in text_config)."""
        text = self.config.get("text_config")
        return text if isinstance(text, dict) else self.config

    @property
    def depth(self) -> int | None:
        """The number of decoder blocks."""
        for source in (self._text(), self.config):
            for key in _DEPTH_KEYS:
                if isinstance(source.get(key), int):
                    return source[key]
        return None

    @property
    def hidden_size(self) -> int | None:
        for source in (self._text(), self.config):
            for key in ("hidden_size", "n_embd", "d_model"):
                if isinstance(source.get(key), int):
                    return source[key]
        return None

    def modules(self) -> ModuleNames | None:
        """Every module name and the linear layers' leaf names, from a meta-device instance (None when the
        architecture cannot be instantiated here: remote code, an unknown model_type)."""
        if self.folder is not None:
            found = _weight_modules(self.folder)
            if found is not None:
                return found
        if self.config.get("auto_map") or not self.config.get("model_type"):
            return None
        return _meta_modules(json.dumps(self.config, sort_keys=True))


@dataclass(frozen=True)
class ModuleNames:
    names: tuple[str, ...]          # every dotted module name
    linear: tuple[str, ...]         # leaf names of the linear layers

    def missing(self, wanted: list[str]) -> list[str]:
        """The names in ``wanted`` that match no module (a module matches its full name or its last parts)."""
        return [w for w in wanted if not any(n == w or n.endswith("." + w) for n in self.names)]


def facts_of(ref: str, cache_dirs: list[Path] | None = None, revision: str | None = None,
             cache_root: str | None = None) -> ModelFacts | None:
    """The facts of model reference ``ref`` when its config can be read here, else None."""
    ref = str(ref or "").strip()
    if not ref:
        return None
    if tiny.is_builtin(ref):
        spec = {k: v for k, v in tiny.SPECS[ref].items() if k not in ("seed", "pretrain")}
        built = tiny.models_dir(cache_root) / tiny.folder_name(ref) if cache_root else None
        return ModelFacts(ref, {"model_type": "llama", "architectures": ["LlamaForCausalLM"], **spec},
                          built if built is not None and (built / tiny.COMPLETE).is_file() else None)
    for kind in (zoo, vision_builtin, vlm_zoo):   # config.json made without building; the folder once built
        if ref in kind.SPECS:
            built = tiny.models_dir(cache_root) / kind.folder_name(ref) if cache_root else None
            return ModelFacts(ref, kind.config_dict(ref),
                              built if built is not None and (built / tiny.COMPLETE).is_file() else None)
    folder = Path(ref).expanduser()
    if not folder.is_dir() and cache_dirs and ref.count("/") == 1:
        from llmpipe.data.tokfacts import hub_snapshot

        folder = hub_snapshot(ref, cache_dirs, revision) or folder
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return ModelFacts(ref, config, folder) if isinstance(config, dict) else None


def _weight_modules(folder: Path) -> ModuleNames | None:
    """Module names from the safetensors headers (a few KB read, no torch): a weight ``a.b.q_proj.weight``
    belongs to module ``a.b.q_proj``; 2-D weights of modules other than embeddings are the linear layers."""
    shapes: dict[str, list[int]] = {}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    for f in files:
        header = _safetensors_header(f)
        if header is None:
            return None
        shapes.update({k: v.get("shape", []) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)})
    modules: set[str] = set()
    linear: set[str] = set()
    for weight, shape in shapes.items():
        module = weight.rsplit(".", 1)[0]
        parts = module.split(".")
        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        if weight.endswith(".weight") and len(shape) == 2 and "embed" not in parts[-1]:
            linear.add(parts[-1])
    return ModuleNames(tuple(sorted(modules)), tuple(sorted(linear)))


def _safetensors_header(path: Path) -> dict | None:
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if not 0 < n < 100_000_000:
                return None
            header = json.loads(fh.read(n))
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) else None


@functools.lru_cache(maxsize=8)
def _meta_modules(config_json: str) -> ModuleNames | None:
    import torch
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    data = json.loads(config_json)
    model_type = data.pop("model_type")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        config = AutoConfig.for_model(model_type, **data)
        model = None
        import transformers

        for auto in ("AutoModelForCausalLM", "AutoModelForImageTextToText", "AutoModel"):
            try:
                with torch.device("meta"):
                    model = getattr(transformers, auto).from_config(config)
                break
            except (ValueError, KeyError, AttributeError, TypeError):
                continue
    except Exception:   # an architecture this transformers does not know: the load stage says so
        return None
    finally:
        hf_logging.set_verbosity(verbosity)
    if model is None:
        return None
    names = tuple(n for n, _ in model.named_modules() if n)
    linear = tuple(sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                           if n and isinstance(m, torch.nn.Linear)}))
    return ModuleNames(names, linear)
