"""Pre-flight rule on the model's context length: ``data.cutoff_len`` beyond the positions the model was made
for (``max_position_embeddings`` in its config.json) is refused unless ``model.rope_scaling`` stretches them.
Read from config.json without loading the model (llmpipe.models.facts). Registered by llmpipe.pipeline.preflight.

Built-in models are left out (builtin:tiny and its kin, and the vision-language built-ins: tiny_vl, whose language
model is builtin:tiny, and the vision-language zoo): their spec, not a config.json, describes them, and the default
data.cutoff_len (2048) is longer than the built-in tiny models' 1024 positions while their bundled data stays far
below it."""
from __future__ import annotations

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import get, problem

_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length(config: dict) -> int | None:
    """The number of positions a model config declares (a vision-language model's text part first)."""
    for source in (config.get("text_config"), config):
        if isinstance(source, dict):
            for key in _POSITION_KEYS:
                if isinstance(source.get(key), int) and source[key] > 0:
                    return source[key]
    return None


def _builtin_folder(ref: str) -> bool:
    """A built-in model's folder given by its path (it carries llmpipe-builtin.json)."""
    from pathlib import Path

    import json

    path = Path(ref).expanduser()
    if (path / "llmpipe-builtin.json").is_file():
        return True
    try:   # builtin:tiny's folder: its completion manifest names it
        return str(json.loads((path / "_COMPLETE").read_text()).get("name", "")).startswith("builtin:")
    except (OSError, ValueError, AttributeError):
        return False


@rule("model-cutoff-context", keys=["data.cutoff_len", "model.rope_scaling", "model.name_or_path"],
      bad=[["model.name_or_path=llmpipe-test/cached", "data.cutoff_len=4096"]],
      good=[["model.name_or_path=llmpipe-test/cached", "data.cutoff_len=1024"],
            ["model.name_or_path=llmpipe-test/cached", "data.cutoff_len=4096", "model.rope_scaling=linear"],
            ["model.name_or_path=llmpipe-test/uncached", "data.cutoff_len=4096"]])
def cutoff_context(cfg, env):
    """data.cutoff_len fits the model's positions (config.json's max_position_embeddings), or model.rope_scaling
    stretches them; a longer row would run on positions the model never saw (or index past a learned table)."""
    from llmpipe.models import tiny, vision_builtin, vlm_zoo
    from llmpipe.models.rules import _facts

    ref = str(get(cfg, "model.name_or_path", "") or "")
    builtin = tiny.is_builtin(ref) or vision_builtin.is_builtin(ref) or vlm_zoo.is_vlm_zoo(ref)
    if not ref or builtin or get(cfg, "model.rope_scaling") or _builtin_folder(ref):
        return
    facts = _facts(cfg)
    n = context_length(facts.config) if facts is not None else None
    cutoff = get(cfg, "data.cutoff_len", 2048)
    if n and isinstance(cutoff, int) and cutoff > n:
        yield problem("model-cutoff-context", "data.cutoff_len", cutoff,
                      f"{ref} has {n} positions (max_position_embeddings in its config.json); longer rows would run"
                      " on positions it was never trained for", f"1..{n}, or more with model.rope_scaling",
                      f"data.cutoff_len={n}, or model.rope_scaling=linear (or dynamic, yarn) to stretch the positions")
