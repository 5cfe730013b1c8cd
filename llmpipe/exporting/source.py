"""The local model folder an upstream stage stands for: ``model/`` of a merge, quantize or (full/freeze)
train stage, or the base model of a load stage (a local folder, or a hub model in the local hub cache); its
tokenizer; and the device and dtype the export stages load it with."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llmpipe.exporting.errors import ExportError

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")


def model_folder(upstream: Path, model_cfg: Any) -> Path:
    upstream = Path(upstream)
    if (upstream / "model" / "config.json").is_file():
        return upstream / "model"
    if not (upstream / "source.json").is_file():
        raise ExportError(f"{upstream} holds no model (no model/ folder and no source.json)")
    from llmpipe.data.published import read_source

    source = read_source(upstream)
    if Path(source).is_dir():
        return Path(source)
    from llmpipe.models.hub import snapshot

    try:
        return snapshot(source, model_cfg)
    except Exception as e:
        raise ExportError(f"cannot get the files of {source} to export them: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None


def has_tokenizer(folder: Path) -> bool:
    return any((Path(folder) / f).is_file() for f in TOKENIZER_FILES)


def tokenizer_folder(upstream: Path, model_dir: Path, load_dir: Path | None) -> Path:
    """Where the tokenizer to export comes from: a stage's ``model/`` folder keeps its own; for the base
    model itself, the tokenizer the load stage saved (with the chat template the run configured)."""
    own = Path(upstream) / "model"
    for folder in (own, Path(load_dir) / "tokenizer" if load_dir is not None else None, Path(model_dir)):
        if folder is not None and has_tokenizer(folder):
            return folder
    raise ExportError(f"{model_dir} has no tokenizer files, and no tokenizer was saved by the load stage")


def device_for(setting: str) -> str:
    """export.device: ``auto`` = the GPU when there is one."""
    import torch

    return "cuda" if setting == "auto" and torch.cuda.is_available() else "cpu"


def target_dtype(name: str):
    """infer.dtype as what from_pretrained takes (``auto``: the model's own dtype)."""
    import torch

    return "auto" if name == "auto" else getattr(torch, name)
