"""Pre-flight validation: composed config -> canonical typed config, or every problem at once.

Runs before torch is imported. Order: per-field checks and old-spelling normalisation (metadata),
translation of flags that transformers 5 dropped, then the cross-field rules registered in
llmpipe.config.rulebook (llmpipe.config.rules, llmpipe.data.rules; llmpipe.pipeline.preflight gathers them).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from llmpipe.config.checks import normalize_and_check
from llmpipe.config.environment import Environment, current
from llmpipe.config.flags import flag_table
from llmpipe.config.rulebook import RULES
from llmpipe.config.typed import typed
from llmpipe.problems import NO_VALUE, Problem


@dataclass
class Validated:
    cfg: DictConfig              # normalised, task part only (no `hydra` node)
    obj: Any                     # typed object (LlmpipeConfig, list flags as lists: config.typed) for stages
    notes: list[str]             # aliases and translations applied (shown to the user, saved in the lock)


def task_part(cfg: DictConfig) -> DictConfig:
    out = copy.deepcopy(cfg)
    if "hydra" in out:
        with open_dict(out):
            del out["hydra"]
    return out


def check(cfg: DictConfig, env: Environment | None = None) -> tuple[Validated | None, list[Problem]]:
    """Field checks, translations, then every rule registered in :data:`RULES`. Callers go through
    llmpipe.pipeline.preflight.validate, which registers the rules of every layer first."""
    from llmpipe.config.translate import translate

    env = env or current()
    cfg = task_part(cfg)
    problems, notes = normalize_and_check(cfg, flag_table())
    problems += translate(cfg, notes)
    problems += _missing(cfg)
    problems += _unknown_top_level(cfg)
    problems += _unknown_keys(cfg)
    if problems:
        return None, problems
    try:
        obj = typed(cfg)
    except OmegaConfBaseException as e:  # an interpolation that cannot resolve, etc.
        key = getattr(e, "full_key", "") or "?"
        return None, [Problem(key, getattr(e, "value", None), str(e).splitlines()[0], rule="compose")]
    for r in RULES.values():
        try:
            problems.extend(r.fn(obj, env))
        except Exception as e:  # a rule must never crash pre-flight; report it as a problem
            problems.append(Problem(",".join(r.keys), None, f"rule {r.id} could not be checked: {e!r}", rule=r.id))
    if problems:
        return None, problems
    return Validated(cfg, obj, notes), []


def _unknown_top_level(cfg: DictConfig) -> list[Problem]:
    """``+recipe=x`` for a recipe Hydra cannot find becomes a plain value; ``+foo=1`` adds a stray key."""
    from llmpipe.config.root import FAMILIES

    out = []
    for key in cfg.keys():
        if key in FAMILIES:
            continue
        value = cfg.get(key)
        if key == "recipe":
            out.append(Problem("recipe", value, "no recipe with this name was found on the recipe search path",
                               "a file recipe/<name>.yaml in a recipe repository",
                               "`llmpipe-tools ls` lists the recipes; check LLMPIPE_RECIPES / hydra.searchpath",
                               rule="unknown-key"))
        else:
            out.append(Problem(str(key), value, "not a parameter family of llmpipe",
                               ", ".join(FAMILIES), f"remove +{key}=...", rule="unknown-key"))
    return out


def _unknown_keys(cfg: DictConfig) -> list[Problem]:
    """Keys inside a family that are not parameters. Hydra lets ``+lora.foo=1`` (and a recipe's stray key, once
    struct mode is off) add them; stored, they would change fingerprints and do nothing, or keep a misspelled
    secret (``+model.hf_hub_tokn=...``) in clear. Free-form parameters (dicts, lists of nodes) are not entered."""
    from llmpipe.config.root import FAMILIES

    table = flag_table()
    paths = {p.path for p in table.params()}
    prefixes = {path.rsplit(".", i)[0] for path in paths for i in range(1, path.count(".") + 1)}
    out: list[Problem] = []

    def walk(node: DictConfig, prefix: str) -> None:
        for key in node.keys():
            path = f"{prefix}.{key}"
            if path in paths:
                continue
            child = node._get_node(key)
            if path in prefixes and isinstance(child, DictConfig):
                walk(child, path)
                continue
            value = NO_VALUE if secret_like(path) else _shown(child)
            owner = owned_trainer_field(path)
            if owner is not None:
                out.append(Problem(path, value, f"a field of transformers' TrainingArguments that llmpipe sets itself "
                                   f"from {owner}", "", f"remove {path}; use {owner}", rule="unknown-key"))
                continue
            close = table.suggest(path, n=1)
            fix = f"{close[0]}=..." if close else f"remove {path} (`llmpipe-tools explain {prefix}` lists the family)"
            out.append(Problem(path, value, "not a parameter of llmpipe" + (f"; did you mean {close[0]}?" if close else ""),
                               "", fix, rule="unknown-key"))

    for family in FAMILIES:
        node = cfg._get_node(family) if family in cfg else None
        if isinstance(node, DictConfig):
            walk(node, family)
    return out


def owned_trainer_field(path: str) -> str | None:
    """Where llmpipe takes the value of ``path`` from, when it names a field of transformers' training arguments
    that llmpipe sets itself (``train.ddp_timeout`` -> launch.ddp_timeout); None otherwise."""
    from llmpipe.config.families.trainer_fields import OWNED

    family, _, leaf = path.partition(".")
    return OWNED.get(leaf) if family == "train" else None


def secret_like(path: str) -> bool:
    """A key that may hold a secret (its value is never shown): ``token``, ``key``, ``secret``, ``password``."""
    leaf = path.rsplit(".", 1)[-1].lower()
    return any(w in leaf for w in ("token", "tokn", "key", "secret", "passw", "pwd", "auth"))


def _shown(node: Any) -> Any:
    try:
        value = node._value()
    except Exception:
        return None
    return value if isinstance(value, (str, int, float, bool)) or value is None else "{...}"


def _missing(cfg: DictConfig) -> list[Problem]:
    out = []
    try:
        unset = OmegaConf.missing_keys(cfg)   # one walk over the config, not one dotted lookup per parameter
    except Exception:
        unset = set()
    for p in flag_table().params():
        if p.path in unset:
            fix = "model=tiny (built-in) or model.name_or_path=<hub id or local path>" if p.path == "model.name_or_path" \
                else f"{p.path}=<value>"
            out.append(Problem(p.path, "???", "is required and was not set", p.meta.help, fix, rule="required"))
    return out
