"""DeepSpeed configs: the presets shipped with llmpipe (``launch.deepspeed=z0|z2|z3|z3_offload``, the JSON
files in llmpipe/config/deepspeed/) or a user's JSON file (``launch.deepspeed=<path>``). Batch sizes,
gradient clipping and precision are ``"auto"``: the Trainer fills them from the train family, so the same
preset fits every recipe. Import-light (no torch)."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

# DeepSpeed presets shipped by llmpipe (launch.deepspeed=<name>) and their ZeRO stage.
DS_PRESETS = {"z0": 0, "z2": 2, "z3": 3, "z3_offload": 3}


def preset_names() -> list[str]:
    return list(DS_PRESETS)


def deepspeed_path(value: str) -> Path:
    """The JSON file behind ``launch.deepspeed``: a shipped preset by name, else the user's path."""
    if value in DS_PRESETS:
        return Path(str(resources.files("llmpipe.config") / "deepspeed" / f"{value}.json"))
    return Path(value).expanduser().resolve()


def load_deepspeed_config(value: str) -> dict[str, Any]:
    """The DeepSpeed config as a dict (a fresh copy: the Trainer fills its ``"auto"`` fields in place)."""
    path = deepspeed_path(value)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"launch.deepspeed={value}: cannot read the DeepSpeed config {path}: {e}") from None


def zero_stage_of(config: dict[str, Any]) -> int:
    return int((config.get("zero_optimization") or {}).get("stage", 0))
