"""Translation of flags that the newer parameter document (or transformers 5) renamed or dropped.

``translate`` runs inside pre-flight validation, after the per-field checks. Each older flag is rewritten in
place onto its canonical field and the older field is reset to ``None`` (unset), so a config written with the
old name and one written with the new name resolve to the same canonical config (and the same fingerprints).
Every translation appends a human-readable note (printed and saved in the lock file). When the old and the
new field are both set, to values that disagree, a :class:`Problem` is returned and nothing is guessed.

"Set" for the new field means: different from its schema default (the composed config cannot tell an
explicit ``key=<default>`` from an untouched one, and those agree with any translation anyway).
"""
from __future__ import annotations

from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from llmpipe.problems import Problem

_UNSET = object()


def _get(cfg: DictConfig, path: str) -> Any:
    try:
        if OmegaConf.is_missing(cfg, path):
            return None
    except Exception:
        return None
    return OmegaConf.select(cfg, path, default=None, throw_on_resolution_failure=False)


def _set(cfg: DictConfig, path: str, value: Any) -> None:
    OmegaConf.update(cfg, path, value, merge=False, force_add=False)


def _is_set(cfg: DictConfig, path: str) -> bool:
    from llmpipe.config.flags import flag_table

    return _get(cfg, path) != flag_table().default(path, _UNSET)


def _rename(cfg: DictConfig, old: str, targets: dict[str, Any], notes: list[str], how: str) -> list[Problem]:
    """Move ``old`` onto ``targets`` (path -> wanted value), or report a conflict with an explicit new value."""
    old_value = _get(cfg, old)
    conflicts = [(p, _get(cfg, p), v) for p, v in targets.items() if _is_set(cfg, p) and _get(cfg, p) != v]
    if conflicts:
        path, have, want = conflicts[0]
        return [Problem(
            f"{old} + {path}", old_value,
            f"the older flag {old}={old_value} means {path}={want}, but {path}={have} is also set",
            allowed=f"one of them ({path} is the current name)", fix=f"drop {old} (keep {path}={have})",
            rule="translate",
        )]
    for path, value in targets.items():
        _set(cfg, path, value)
    _set(cfg, old, {} if isinstance(old_value, (dict, DictConfig)) else None)   # a mapping field is unset when empty
    changed = ", ".join(f"{p}={v}" for p, v in targets.items())
    notes.append(f"{old}={old_value} is an older flag ({how}); using {changed}")
    return []


def _square(cfg: DictConfig, old: str, new: str, notes: list[str]) -> list[Problem]:
    r = _get(cfg, old)
    return _rename(cfg, old, {new: int(r) * int(r)}, notes, f"a side length in pixels; {new} = r*r")


def _image_resolution(cfg, notes):
    return _square(cfg, "vision.image_resolution", "vision.image_max_pixels", notes)


def _video_resolution(cfg, notes):
    return _square(cfg, "vision.video_resolution", "vision.video_max_pixels", notes)


def _use_cache(cfg, notes):
    return _rename(cfg, "infer.use_cache", {"infer.use_kv_cache": bool(_get(cfg, "infer.use_cache"))}, notes,
                   "renamed use_kv_cache")


def _warmup_ratio(cfg, notes):
    r = float(_get(cfg, "train.warmup_ratio"))
    return _rename(cfg, "train.warmup_ratio", {"train.warmup_steps": r}, notes,
                   "removed in transformers 5, where a float warmup_steps in [0,1) is a ratio of total steps")


def _new_special_tokens(cfg, notes):
    return _rename(cfg, "model.new_special_tokens", {"model.add_special_tokens": _get(cfg, "model.new_special_tokens")},
                   notes, "replaced by add_special_tokens")


def _train_mm_proj_only(cfg, notes):
    if not _get(cfg, "vision.train_mm_proj_only"):
        _set(cfg, "vision.train_mm_proj_only", None)
        notes.append("vision.train_mm_proj_only=false is an older flag with no effect (the vision.freeze_* defaults"
                     " apply); ignoring it")
        return []
    return _rename(cfg, "vision.train_mm_proj_only", {
        "vision.freeze_vision_tower": True, "vision.freeze_multi_modal_projector": False,
        "vision.freeze_language_model": True,
    }, notes, "replaced by the vision.freeze_* switches")


def _save_safetensors(cfg, notes):
    v = _get(cfg, "train.save_safetensors")
    if v:
        notes.append("train.save_safetensors=true is an older flag: transformers 5 always writes safetensors"
                     " (no change)")
        return []
    return [Problem(
        "train.save_safetensors", False,
        "transformers 5 writes safetensors only: TrainingArguments has no save_safetensors and save_pretrained no "
        "safe_serialization any more, so checkpoints and models cannot be written as PyTorch .bin",
        allowed="true or unset (safetensors)",
        fix="remove train.save_safetensors; a tool that needs .bin can convert: torch.save(safetensors.torch.load_file(f))",
        rule="translate",
    )]


def _logging_dir(cfg, notes):
    notes.append(f"train.logging_dir={_get(cfg, 'train.logging_dir')}: removed from transformers 5"
                 " TrainingArguments; kept, the train stage points TensorBoard there")
    return []


def _ktransformers(cfg, notes):
    return [Problem(
        "infer.backend", "ktransformers",
        "the ktransformers inference engine was removed from LLaMA-Factory (2026-05, #10430) and is not provided",
        allowed="huggingface, vllm, sglang", fix="infer.backend=huggingface", rule="translate",
    )]


def _gradient_checkpointing(cfg, notes):
    on = bool(_get(cfg, "train.gradient_checkpointing"))
    return _rename(cfg, "train.gradient_checkpointing", {"model.disable_gradient_checkpointing": not on}, notes,
                   "transformers' switch; llmpipe checkpoints by default and model.disable_gradient_checkpointing "
                   "turns it off")


def _gradient_checkpointing_kwargs(cfg, notes):
    kwargs = OmegaConf.to_container(_get(cfg, "train.gradient_checkpointing_kwargs")) or {}
    other = sorted(set(kwargs) - {"use_reentrant"})
    if other:
        return [Problem(
            "train.gradient_checkpointing_kwargs", kwargs,
            f"llmpipe sets checkpointing from its own parameters, and {', '.join(other)} has none: only use_reentrant "
            "(model.use_reentrant_gc) is translated", allowed='{"use_reentrant": true|false}',
            fix="model.use_reentrant_gc=..., and model.gradient_checkpointing=full|attention|mlp for what is "
                "recomputed", rule="translate")]
    if "use_reentrant" not in kwargs:
        _set(cfg, "train.gradient_checkpointing_kwargs", {})
        notes.append("train.gradient_checkpointing_kwargs={} is an older flag with nothing to translate; ignoring it")
        return []
    return _rename(cfg, "train.gradient_checkpointing_kwargs",
                   {"model.use_reentrant_gc": bool(kwargs["use_reentrant"])}, notes, "transformers' checkpointing options")


def _group_by_length(cfg, notes):
    if not _get(cfg, "train.group_by_length"):
        _set(cfg, "train.group_by_length", None)
        notes.append("train.group_by_length=false is an older flag with no effect (random sampling is the default);"
                     " ignoring it")
        return []
    return _rename(cfg, "train.group_by_length", {"train.train_sampling_strategy": "group_by_length"}, notes,
                   "removed in transformers 5")


# (old path, predicate on its value, handler)
_TRANSLATIONS: list[tuple[str, Callable[[Any], bool], Callable[[DictConfig, list[str]], list[Problem]]]] = [
    ("vision.image_resolution", lambda v: v is not None, _image_resolution),
    ("vision.video_resolution", lambda v: v is not None, _video_resolution),
    ("vision.train_mm_proj_only", lambda v: v is not None, _train_mm_proj_only),
    ("infer.use_cache", lambda v: v is not None, _use_cache),
    ("train.warmup_ratio", lambda v: v is not None, _warmup_ratio),
    ("model.new_special_tokens", lambda v: v is not None, _new_special_tokens),
    ("train.save_safetensors", lambda v: v is not None, _save_safetensors),
    ("train.logging_dir", lambda v: v is not None, _logging_dir),
    ("infer.backend", lambda v: v == "ktransformers", _ktransformers),
    ("train.gradient_checkpointing", lambda v: v is not None, _gradient_checkpointing),
    ("train.gradient_checkpointing_kwargs", lambda v: bool(v), _gradient_checkpointing_kwargs),
    ("train.group_by_length", lambda v: v is not None, _group_by_length),
]


def translate(cfg: DictConfig, notes: list[str]) -> list[Problem]:
    """Rewrite older flags in ``cfg`` (in place) to their canonical fields; return conflicts as problems."""
    problems: list[Problem] = []
    for path, applies, handler in _TRANSLATIONS:
        value = _get(cfg, path)
        if applies(value):
            problems.extend(handler(cfg, notes))
    return problems
