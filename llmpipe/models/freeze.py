"""Freeze (partial-parameter) fine-tuning: only some decoder blocks (and chosen modules) are trainable."""
from __future__ import annotations

from typing import Any

from llmpipe.errors import UserError


class FreezeError(UserError):
    """The freeze settings do not fit the model (message says what exists)."""


def decoder_layers(model) -> tuple[Any, str]:
    """(module, attribute) holding the ModuleList of decoder blocks (model.model, 'layers' for Llama)."""
    import torch

    inner = model.get_decoder() if hasattr(model, "get_decoder") else model
    for attr in ("layers", "h"):
        if isinstance(getattr(inner, attr, None), torch.nn.ModuleList):
            return inner, attr
    raise FreezeError(f"cannot find the decoder blocks of {type(model).__name__}, so layers cannot be chosen")


def blocks(model):
    inner, attr = decoder_layers(model)
    return getattr(inner, attr)


def trainable_layer_ids(model: Any, n: int) -> list[int]:
    """freeze.trainable_layers: n > 0 -> the last n layers; n < 0 -> the first |n| layers."""
    total = len(blocks(model))
    if abs(n) > total:   # LLaMA-Factory trains every block then, without a word
        raise FreezeError(f"freeze.trainable_layers={n}, but the model has only {total} decoder blocks; use 1..{total} "
                          f"(the last n blocks) or -1..-{total} (the first n)")
    if n > 0:
        return list(range(max(0, total - n), total))
    return list(range(min(total, -n)))


def _matches(name: str, wanted: list[str]) -> str | None:
    for w in wanted:
        if name == w or name.rsplit(".", 1)[-1] == w:
            return w
    return None


def _leaf_names(modules) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name, _ in modules if name})


def apply_freeze(model: Any, cfg: Any, layer_ids: list[int] | None = None) -> dict[str, int]:
    """Make only the chosen blocks' modules and the extra modules trainable. ``layer_ids`` overrides
    freeze.trainable_layers (LLaMA Pro passes the expanded blocks)."""
    fz = cfg.freeze
    layer_list = blocks(model)
    layers = sorted(set(layer_ids if layer_ids is not None else trainable_layer_ids(model, fz.trainable_layers)))
    modules = list(fz.trainable_modules) or ["all"]
    extra = list(fz.extra_modules)
    for p in model.parameters():
        p.requires_grad_(False)
    found: set[str] = set()
    for i in layers:
        block = layer_list[i]
        if "all" in modules:
            block.requires_grad_(True)
            continue
        for name, module in block.named_modules():
            hit = _matches(name, modules)
            if hit:
                module.requires_grad_(True)
                found.add(hit)
    missing = [m for m in modules if m != "all" and m not in found]
    if missing:
        raise FreezeError(f"freeze.trainable_modules: {', '.join(missing)} not found in the trained blocks; "
                          f"choose from: {', '.join(_leaf_names(layer_list[layers[0]].named_modules()))}")
    found = set()
    for name, module in model.named_modules():
        hit = _matches(name, extra)
        if hit:
            module.requires_grad_(True)
            found.add(hit)
    missing = [m for m in extra if m not in found]
    if missing:
        prefix = next(n for n, m in model.named_modules() if m is layer_list)   # the blocks' own path
        outside = [(n, m) for n, m in model.named_modules() if n != prefix and not n.startswith(prefix + ".")]
        raise FreezeError(f"freeze.extra_modules: {', '.join(missing)} not found; choose from: "
                          f"{', '.join(_leaf_names(outside))}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise FreezeError(f"freeze settings leave nothing trainable (layers {layers}, modules {modules})")
    return {"trainable_params": trainable, "trainable_layers": len(layers)}
