"""The recipe composer: a form generated from the flag table (config.flags: every parameter's type, default,
allowed values and help), checked by the same pre-flight as ``python -m llmpipe`` (pipeline.session.check),
the stage graph it would run with what the store already holds, the YAML of a recipe, and the exact command."""
from __future__ import annotations

import shlex
import threading
from typing import Any

_HYDRA = threading.Lock()   # Hydra's global state: one composition at a time
_QUOTE_CHARS = set(",[]{}()'\"=:\\ $%*@#")


def override_text(value: Any) -> str:
    """A composed value as the text of a Hydra override (what the form shows and sends back)."""
    import json

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    text = str(value)
    plain = text and not (_QUOTE_CHARS & set(text)) and text.lower() not in ("null", "true", "false") \
        and not _numeric(text)
    return text if plain else "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def recipe_names() -> list[str]:
    from llmpipe.tools.recipes import compose_sources, options

    with _HYDRA:
        sources = compose_sources([])
    return sorted({n for s in sources if s.provider != "hydra" for n in options(s, "recipe")})


def recipe_text(name: str) -> str | None:
    """The YAML text of recipe ``name`` from the first source that has it (as Hydra picks)."""
    from llmpipe.tools.recipes import _pkg_dir, compose_sources, options

    with _HYDRA:
        sources = compose_sources([])
    for s in sources:
        if s.provider == "hydra" or name not in options(s, "recipe"):
            continue
        if s.schema == "file":
            from pathlib import Path

            return (Path(s.path) / "recipe" / f"{name}.yaml").read_text(encoding="utf-8")
        folder = _pkg_dir(s.path)
        if folder is not None:
            return folder.joinpath("recipe", f"{name}.yaml").read_text(encoding="utf-8")
    return None


def _compose(recipe: str | None, overrides: list[str]):
    from llmpipe.config.compose import compose

    args = ([f"+recipe={recipe}"] if recipe else []) + overrides
    with _HYDRA:
        return compose(args)


def form(recipe: str | None) -> list[dict[str, Any]]:
    """Families with their parameters: path, type, default (schema), value (as the recipe composes it, as
    override text), help, choices, bounds, secret/volatile/gpu-only markers."""
    from omegaconf import OmegaConf

    from llmpipe.config.flags import flag_table

    cfg = _compose(recipe, [])
    families: dict[str, list[dict[str, Any]]] = {}
    for p in flag_table().params():
        m = p.meta
        value = OmegaConf.select(cfg, p.path, default=p.default, throw_on_missing=False)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=False)
        bounds = [f"{op} {v:g}" for op, v in ((">=", m.ge), (">", m.gt), ("<=", m.le), ("<", m.lt)) if v is not None]
        families.setdefault(p.family, []).append({
            "path": p.path, "type": p.type, "default": "" if m.secret else override_text(p.default),
            "value": "" if m.secret else override_text(value), "help": m.help,
            "choices": [override_text(c) for c in m.choices] if m.choices else None,
            "bounds": ", ".join(bounds), "secret": m.secret, "volatile": m.volatile, "gpu_only": m.gpu_only,
        })
    return [{"family": name, "params": params} for name, params in families.items()]


def _nested_set(tree: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        if not isinstance(tree.get(part), dict):
            tree[part] = {}
        tree = tree[part]
    tree[leaf] = value


def recipe_yaml(recipe: str | None, overrides: dict[str, str], name: str = "my_recipe") -> str:
    """A recipe file: the base recipe's text (its defaults list kept) with the changed values set in it."""
    import yaml

    base = yaml.safe_load(recipe_text(recipe) or "") if recipe else None
    data = base if isinstance(base, dict) else {}
    for path, text in overrides.items():
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        _nested_set(data, path, value)
    head = ["# @package _global_", (f"# Run:  python -m llmpipe +recipe={name}   (save as <recipe folder>/recipe/"
                                     f"{name}.yaml; see docs/recipes.md)")]
    if recipe:
        head.append(f"# Composed in llmpipe-tools ui from the recipe '{recipe}' with {len(overrides)} change(s).")
    return "\n".join(head) + "\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def command(recipe: str | None, overrides: dict[str, str]) -> str:
    args = ([f"+recipe={recipe}"] if recipe else []) + [f"{k}={v}" for k, v in overrides.items()]
    return " ".join(["python", "-m", "llmpipe", *(shlex.quote(a) for a in args)])


def _composition_problem(message: str, overrides: dict[str, str]) -> dict[str, Any]:
    """Hydra refused an override before pre-flight ran (a value of the wrong type): attach it to its field."""
    first = message.strip().splitlines()[0] if message.strip() else "the configuration could not be composed"
    for key, text in overrides.items():
        if f"{key}={text}" in message or f"'{key}'" in message:
            return {"key": key, "value": text, "message": " ".join(message.split())[:400], "allowed": "", "fix": "",
                    "rule": "compose"}
    return {"key": "", "value": "", "message": first, "allowed": "", "fix": "", "rule": "compose"}


def check(recipe: str | None, overrides: dict[str, str]) -> dict[str, Any]:
    """{'problems': [...], 'stages': [...], 'edges': [...], 'command', 'yaml', 'store'}: the pre-flight of the
    form's values, and when it passes, the plan with each stage run or cached."""
    from llmpipe.pipeline.session import check as preflight

    overrides = {k: v for k, v in overrides.items() if k}
    out: dict[str, Any] = {"problems": [], "stages": [], "edges": [], "store": "",
                           "command": command(recipe, overrides), "yaml": recipe_yaml(recipe, overrides)}
    try:
        cfg = _compose(recipe, [f"{k}={v}" for k, v in overrides.items()])
    except Exception as e:   # noqa: BLE001 - Hydra refused an override: shown beside its field
        out["problems"] = [_composition_problem(str(e), overrides)]
        return out
    with _HYDRA:
        validated, problems = preflight(cfg)
    if problems:
        out["problems"] = [{"key": p.key, "value": _plain(p.value), "message": p.message, "allowed": p.allowed,
                            "fix": p.fix, "rule": p.rule} for p in problems]
        return out
    out.update(plan(validated))
    return out


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def plan(validated: Any) -> dict[str, Any]:
    """The stages a valid configuration would run, each 'run' or 'cached' in its store (as llmpipe-tools plan)."""
    session = _session(validated)
    runner = session.runner()
    stages = [{"id": n.id, "kind": n.kind.name, "label": n.label, "status": _will(runner.status_of(n)),
               "fingerprint": n.fingerprint or ""} for n in session.plan.nodes]
    edges = [(up, n.id) for n in session.plan.nodes for up in dict.fromkeys(n.inputs.values())]
    return {"stages": stages, "edges": edges, "store": str(session.store.root)}


def _will(status: str) -> str:
    """The runner's 'run' / 'run (forced)' / 'cached', as the composer says it: nothing has run yet."""
    return status if status == "cached" else "will " + status


def _session(validated: Any):
    from llmpipe.pipeline.dag import build_plan
    from llmpipe.pipeline.fingerprint import compute_fingerprints
    from llmpipe.pipeline.session import Session
    from llmpipe.pipeline.store import Store

    session = Session(validated, build_plan(validated.cfg), Store(validated.obj.run.cache_root))
    compute_fingerprints(session.plan, session.store.root)
    return session
