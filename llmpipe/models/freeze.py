"""Freeze (partial-parameter) fine-tuning: only some decoder layers (and chosen modules) are trainable."""
from __future__ import annotations

import re
from typing import Any


def _num_layers(model: Any) -> int:
    cfg = getattr(model, "config", None)
    n = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "num_layers", None)
    if not n:
        raise ValueError("this model does not expose num_hidden_layers; freeze fine-tuning cannot pick layers")
    return int(n)


def trainable_layer_ids(model: Any, n: int) -> list[int]:
    """freeze.trainable_layers: n > 0 -> the last n layers; n < 0 -> the first |n| layers."""
    total = _num_layers(model)
    if n > 0:
        return list(range(max(0, total - n), total))
    return list(range(min(total, -n)))


def apply_freeze(model: Any, cfg: Any) -> dict[str, int]:
    fz = cfg.freeze
    layers = set(trainable_layer_ids(model, fz.trainable_layers))
    modules = [m.strip() for m in (fz.trainable_modules or "all").split(",") if m.strip()]
    extra = [m.strip() for m in (fz.extra_modules or "").split(",") if m.strip()]
    layer_re = re.compile(r"\.layers\.(\d+)\.")
    for name, p in model.named_parameters():
        m = layer_re.search(name)
        ok = False
        if m and int(m.group(1)) in layers:
            ok = "all" in modules or any(f".{mod}." in name or name.endswith(f".{mod}") for mod in modules)
        if any(f".{e}." in f".{name}" or name.startswith(e + ".") for e in extra):
            ok = True
        p.requires_grad_(ok)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise ValueError(f"freeze settings leave nothing trainable (layers {sorted(layers)}, modules {modules})")
    return {"trainable_params": trainable}
