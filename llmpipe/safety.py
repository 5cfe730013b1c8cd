"""Untrusted recipes cannot run code: the one place where llmpipe turns a ``_target_`` into a call.

A shared recipe is data. Built-in choices are registry names (``pref.loss: sigmoid``); ``_target_`` is
honoured only at the declared :data:`EXTENSION_POINTS`, and only for targets on an allowlist that never
comes from the composed config (recipes are ``_global_`` and could rewrite anything in it):

* the built-in prefixes :data:`BUILTIN_PREFIXES` (``llmpipe.``, ``torch.optim.``, ``transformers.``,
  ``peft.``, ``trl.``), plus
* the comma-separated prefixes in the environment variable ``LLMPIPE_ALLOWED_TARGETS``
  (``acme_callbacks`` allows ``acme_callbacks`` and ``acme_callbacks.*``).

A target is checked twice: its spelling (before anything is imported, so a refused module is never
imported), then its resolved identity (``obj.__module__`` + ``__qualname__``), so an allowed module that
re-exports ``os.system`` does not smuggle it through (the alias bypass of hydra PR #3409).

This module imports no torch; Hydra's instantiate is imported only when something is instantiated.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

ENV_ALLOWED = "LLMPIPE_ALLOWED_TARGETS"
BUILTIN_PREFIXES = ("llmpipe.", "torch.optim.", "transformers.", "peft.", "trl.")
# Config paths whose nodes may carry ``_target_`` (a list path covers each of its elements and
# everything below them). Every instantiate() call names one of these.
EXTENSION_POINTS = ("train.callbacks",)


class UnsafeTargetError(ValueError):
    """A ``_target_`` outside the allowlist (or at a path that is not an extension point)."""


def allowed_prefixes() -> tuple[str, ...]:
    extra = [p.strip() for p in os.environ.get(ENV_ALLOWED, "").split(",") if p.strip()]
    return BUILTIN_PREFIXES + tuple(extra)


def _matches(name: str, prefix: str) -> bool:
    base = prefix.rstrip(".")
    if not base:
        return False
    return name == base or name.startswith(base + ".")


def name_allowed(name: str, prefixes: tuple[str, ...] | None = None) -> bool:
    """Whether a dotted name is under one of the allowed prefixes (on a dot boundary)."""
    prefixes = allowed_prefixes() if prefixes is None else prefixes
    return any(_matches(name, p) for p in prefixes)


def resolved_name(obj: Any) -> str | None:
    """``module.qualname`` of what a target really is (functions, classes; else its type)."""
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if isinstance(mod, str) and isinstance(qual, str) and (callable(obj) or isinstance(obj, type)):
        return f"{mod}.{qual}"
    tp = type(obj)
    if tp.__module__ == "builtins":   # a module, a partial, a builtin instance: no trustworthy identity
        return None
    return f"{tp.__module__}.{tp.__qualname__}"


def check_target(target: Any, *, where: str = "_target_") -> None:
    """Raise :class:`UnsafeTargetError` unless ``target`` (a dotted string or an object) is allowlisted."""
    prefixes = allowed_prefixes()
    allowed_text = ", ".join(p.rstrip(".") + ".*" for p in prefixes)
    hint = f"allowed: {allowed_text} (extend with {ENV_ALLOWED}=prefix1,prefix2 in the environment)"
    if isinstance(target, str):
        if not name_allowed(target, prefixes):
            raise UnsafeTargetError(f"{where}: '{target}' is not allowlisted; {hint}")
        from hydra.utils import get_object

        try:
            obj = get_object(target)
        except Exception as e:
            raise UnsafeTargetError(f"{where}: '{target}' cannot be imported: {e}") from None
    else:
        obj = target
    real = resolved_name(obj)
    if real is None or not name_allowed(real, prefixes):
        shown = target if isinstance(target, str) else repr(target)
        raise UnsafeTargetError(
            f"{where}: '{shown}' resolves to '{real or type(obj).__name__}', which is not allowlisted; {hint}"
        )


def iter_targets(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, value)`` for every ``_target_`` key anywhere in a config node (resolved)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    yield from _walk(node, path)


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    import dataclasses

    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from _walk(getattr(node, f.name), _join(path, f.name))
    elif isinstance(node, dict):
        for k, v in node.items():
            if k == "_target_":
                yield _join(path, "_target_"), v
            else:
                yield from _walk(v, _join(path, str(k)))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def extension_point_of(path: str) -> str | None:
    """The extension point a config path lies under (``train.callbacks[0]._target_`` -> ``train.callbacks``)."""
    for point in EXTENSION_POINTS:
        if path.startswith(point) and path[len(point):len(point) + 1] in ("[", "."):
            return point
    return None


def instantiate(node: Any, *, point: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` for an extension point, after checking every ``_target_`` in ``node``
    (and in ``kwargs``) against the allowlist. ``point`` must be one of :data:`EXTENSION_POINTS`."""
    if point not in EXTENSION_POINTS:
        raise ValueError(f"'{point}' is not a declared extension point ({', '.join(EXTENSION_POINTS)})")
    for where, target in iter_targets(node, point):
        check_target(target, where=where)
    for key, value in kwargs.items():
        for where, target in iter_targets(value, f"{point}({key}=)"):
            check_target(target, where=where)
    from hydra.utils import instantiate as _instantiate

    # Hydra 1.4 adds its own target allowlist argument (its name is still changing, PR #3422); when it
    # lands, pass allowed_prefixes() here -- this is the only call site in llmpipe.
    return _instantiate(node, **kwargs)


def instantiate_all(nodes: Any, *, point: str, **kwargs: Any) -> list[Any]:
    """Instantiate each element of a list-valued extension point (e.g. ``train.callbacks``)."""
    from omegaconf import ListConfig

    items = list(nodes) if isinstance(nodes, (list, tuple, ListConfig)) else [nodes]
    return [instantiate(n, point=point, **kwargs) for n in items if n is not None]


# --- Recipe files may not configure Hydra itself ----------------------------------------------------------
# Hydra instantiates `hydra.callbacks` and logging factories while it composes, before any pre-flight can run,
# so a `hydra:` section (or a `hydra/...` default) inside a shared recipe repository could execute code or
# switch pre-flight off. Those files are scanned before Hydra starts; the user's own command line and
# llmpipe's primary config stay free to set hydra.*.

def _recipe_folders(argv: list[str]) -> list[str]:
    from hydra_plugins.llmpipe_searchpath import recipe_entries
    from llmpipe.resources import search_path

    entries = [search_path("recipes"), *recipe_entries()]
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "hydra.searchpath" and value:
            entries += [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
    return entries


def _folder_of(entry: str):
    from pathlib import Path

    if entry.startswith("file://"):
        return Path(entry[len("file://"):])
    if entry.startswith("pkg://"):
        import importlib.util

        module = entry[len("pkg://"):].replace("/", ".")
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        return Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None
    return Path(entry)


# What a recipe may say about Hydra: which sweeper/launcher plugin (by name) and plain sweep settings.
_ALLOWED_HYDRA_GROUPS = ("hydra/sweeper", "hydra/launcher")
_ALLOWED_HYDRA_KEYS = ("sweeper", "launcher")


def _has_target(node) -> bool:
    if isinstance(node, dict):
        return "_target_" in node or any(_has_target(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_target(v) for v in node)
    return False


def _hydra_settings(text: str) -> str | None:
    import yaml

    first = text.lstrip().splitlines()[0] if text.strip() else ""
    if first.startswith("# @package") and first.split()[-1].startswith("hydra"):
        return "declares `@package hydra`"
    doc = yaml.safe_load(text)   # YAMLError: the caller reports a malformed file
    if not isinstance(doc, dict):
        return None
    hydra = doc.get("hydra")
    if hydra is not None:
        extra = sorted(set(hydra) - set(_ALLOWED_HYDRA_KEYS)) if isinstance(hydra, dict) else ["hydra"]
        if extra:
            return f"sets hydra.{extra[0]}"
        if _has_target(hydra):
            return "sets a `_target_` under hydra:"
    for item in doc.get("defaults") or []:
        names = [item] if isinstance(item, str) else list(item) if isinstance(item, dict) else []
        for name in names:
            bare = str(name).replace("override", "").strip().lstrip("/")
            if (bare.startswith("hydra/") or bare == "hydra") and not bare.startswith(_ALLOWED_HYDRA_GROUPS):
                return f"selects the Hydra option `{name}` in its defaults"
    return None


def hydra_settings_in_recipes(argv: list[str]):
    """Problems for recipe-repository files that try to configure Hydra (checked before Hydra starts)."""
    import yaml

    from llmpipe.problems import NO_VALUE, Problem

    problems = []
    for entry in _recipe_folders(argv):
        folder = _folder_of(entry)
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.yaml")):
            try:
                why = _hydra_settings(path.read_text(encoding="utf-8"))
            except OSError:
                continue
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
                problems.append(Problem(str(path), NO_VALUE, f"not valid YAML{where}: {getattr(e, 'problem', e)}",
                                        fix="fix the file's YAML syntax", rule="recipe-yaml"))
                continue
            if why:
                problems.append(Problem(
                    str(path), NO_VALUE, f"a recipe file {why}; recipes cannot configure Hydra's callbacks, logging or "
                    "plugins' targets (they can run code)",
                    "the llmpipe families, hydra/sweeper and hydra/launcher choices, hydra.sweeper/launcher settings",
                    "move hydra.* settings to the command line, e.g. hydra/launcher=joblib", rule="recipe-hydra"))
    return problems
