"""Model weights as shards: read the tensors of a transformers model folder (safetensors or .bin, sharded
or not) one at a time, and write them again at a maximum shard size, as ``.safetensors`` or as legacy
PyTorch ``.bin`` files, with the index file transformers expects when there is more than one shard.

transformers 5 no longer writes ``.bin`` files (``safe_serialization=False`` is ignored) but still loads
them; :func:`write_shards` writes them itself (``torch.save`` of state-dict shards).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from llmpipe.exporting.errors import ExportError

SAFE_INDEX, SAFE_SINGLE = "model.safetensors.index.json", "model.safetensors"
BIN_INDEX, BIN_SINGLE = "pytorch_model.bin.index.json", "pytorch_model.bin"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def shard_bytes(size: Any) -> int:
    """``export.size`` as bytes: a number is GB (10^9 bytes, as transformers' "5GB"); a string may name
    its unit ("500MB", "1.5GB", "64KiB")."""
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        value, unit = float(size), "GB"
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(size))
        if not m or m.group(2).upper() not in _UNITS:
            raise ExportError(f"export.size={size!r}: not a size (a number of GB, or e.g. '500MB')")
        value, unit = float(m.group(1)), m.group(2).upper() or "GB"
    out = int(value * _UNITS[unit])
    if out <= 0:
        raise ExportError(f"export.size={size!r}: the shard size must be positive")
    return out


def is_weight_file(name: str) -> bool:
    return name.endswith((".safetensors", ".bin", ".pt", ".pth")) or name in (SAFE_INDEX, BIN_INDEX)


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder, safetensors preferred (as transformers loads them)."""
    folder = Path(folder)
    for index, single in ((SAFE_INDEX, SAFE_SINGLE), (BIN_INDEX, BIN_SINGLE)):
        if (folder / index).is_file():
            names = json.loads((folder / index).read_text())["weight_map"].values()
            return [folder / n for n in sorted(set(names))]
        if (folder / single).is_file():
            return [folder / single]
    raise ExportError(f"{folder}: no model weights found ({SAFE_SINGLE}, {BIN_SINGLE} or their index files)")


def iter_tensors(files: Iterable[Path]) -> Iterator[tuple[str, Any]]:
    """(name, tensor) of every weight, one file in memory at a time."""
    import torch
    from safetensors import safe_open

    for f in files:
        if f.suffix == ".safetensors":
            with safe_open(str(f), framework="pt") as sf:
                for key in sf.keys():
                    yield key, sf.get_tensor(key)
        else:
            state = torch.load(str(f), map_location="cpu", weights_only=True)
            yield from state.items()
            del state


def _nbytes(t) -> int:
    return t.numel() * t.element_size()


def _groups(tensors: Iterable[tuple[str, Any]], max_bytes: int) -> Iterator[dict[str, Any]]:
    """Consecutive groups of at most ``max_bytes`` (a larger single tensor gets a shard of its own)."""
    group: dict[str, Any] = {}
    size = 0
    for name, t in tensors:
        if name in group:
            raise ExportError(f"weight {name} appears twice in the source model")
        n = _nbytes(t)
        if group and size + n > max_bytes:
            yield group
            group, size = {}, 0
        group[name] = t
        size += n
    if group:
        yield group


def _save(group: dict[str, Any], path: Path, legacy: bool) -> None:
    if legacy:
        import torch

        torch.save({k: v.contiguous() for k, v in group.items()}, str(path))
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in group.items()}, str(path), metadata={"format": "pt"})


def write_shards(tensors: Iterable[tuple[str, Any]], out: Path, max_bytes: int, legacy: bool = False,
                 cast=None) -> dict[str, Any]:
    """Write ``tensors`` into ``out`` as shards of at most ``max_bytes``; returns a summary.

    ``cast``: a torch dtype applied to floating-point tensors (None keeps each tensor's dtype).
    File names follow transformers: ``model.safetensors`` / ``model-00001-of-00003.safetensors`` +
    ``model.safetensors.index.json`` (``pytorch_model*.bin`` with ``legacy``).
    """
    out = Path(out)
    stem, ext, index_name, single = (("pytorch_model", "bin", BIN_INDEX, BIN_SINGLE) if legacy
                                     else ("model", "safetensors", SAFE_INDEX, SAFE_SINGLE))
    if cast is not None:
        tensors = ((k, v.to(cast) if v.is_floating_point() else v) for k, v in tensors)
    parts: list[tuple[Path, list[str]]] = []
    total = 0
    for i, group in enumerate(_groups(tensors, max_bytes), 1):
        tmp = out / f".{stem}-part-{i:05d}.{ext}"
        _save(group, tmp, legacy)
        total += sum(_nbytes(t) for t in group.values())
        parts.append((tmp, list(group)))
    if not parts:
        raise ExportError("the source model has no weights to export")
    weight_map: dict[str, str] = {}
    files = []
    for i, (tmp, names) in enumerate(parts, 1):
        name = single if len(parts) == 1 else f"{stem}-{i:05d}-of-{len(parts):05d}.{ext}"
        os.replace(tmp, out / name)
        files.append(name)
        weight_map.update(dict.fromkeys(names, name))
    if len(parts) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / index_name).write_text(json.dumps(index, indent=2) + "\n")
    return {"files": files, "shards": len(files), "total_bytes": total, "tensors": len(weight_map),
            "index": index_name if len(parts) > 1 else None}
