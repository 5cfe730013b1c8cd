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
# everything below them), each with the base class its objects must derive from: a target is allowed by
# its purpose, not only by its package (``transformers.testing_utils.run_command`` is under
# ``transformers.`` and is no callback). Every instantiate() call names one of these.
EXTENSION_POINTS: dict[str, str] = {
    "train.callbacks": "transformers.TrainerCallback",
}


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


def check_target(target: Any, *, where: str = "_target_", base: str | None = None, classes_only: bool = False) -> None:
    """Raise :class:`UnsafeTargetError` unless ``target`` (a dotted string or an object) is allowlisted, and,
    with ``base`` (a dotted class name), is a subclass of it; ``classes_only`` refuses functions and other
    callables (a nested ``_target_`` under an extension point builds an argument, never runs a function)."""
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
    shown = target if isinstance(target, str) else repr(target)
    if real is None or not name_allowed(real, prefixes):
        raise UnsafeTargetError(
            f"{where}: '{shown}' resolves to '{real or type(obj).__name__}', which is not allowlisted; {hint}"
        )
    if base is not None:
        problem = purpose_problem(obj, base)
        if problem:
            raise UnsafeTargetError(f"{where}: '{shown}' {problem}")
    elif classes_only and not isinstance(obj, type):
        raise UnsafeTargetError(f"{where}: '{shown}' is not a class (a function or other callable is never called)")


def purpose_problem(obj: Any, base: str) -> str | None:
    """Why ``obj`` cannot serve an extension point whose objects derive from ``base`` (None: it can)."""
    from hydra.utils import get_object

    if not isinstance(obj, type):
        return f"is not a class (a {type(obj).__name__}); only subclasses of {base} are accepted here"
    try:
        base_cls = get_object(base)
    except Exception as e:   # noqa: BLE001 - the base cannot be imported: nothing can qualify
        return f"cannot be checked: the base class {base} cannot be imported ({e})"
    if not issubclass(obj, base_cls):
        return f"is not a subclass of {base}; only such classes are accepted here"
    return None


def element_target(path: str, point: str) -> bool:
    """Whether ``path`` is the ``_target_`` of an extension point's own object (``train.callbacks[0]._target_``),
    not one nested in its arguments."""
    rest = path[len(point):]
    if rest == "._target_":
        return True
    if rest.startswith("["):
        close = rest.find("]")
        return close > 0 and rest[close + 1:] == "._target_"
    return False


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
    base = EXTENSION_POINTS[point]
    for where, target in iter_targets(node, point):
        if where == f"{point}._target_":
            check_target(target, where=where, base=base)
        else:
            check_target(target, where=where, classes_only=True)
    for key, value in kwargs.items():
        for where, target in iter_targets(value, f"{point}({key}=)"):
            check_target(target, where=where, classes_only=True)
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

def _hydra_args(argv: list[str]):
    """``argv`` parsed by Hydra's own argument parser (``--config-dir X``, ``--config-dir=X``, ``-cd X``,
    abbreviations: whatever Hydra accepts), or None where Hydra will refuse the command line itself."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def refuse(message: str):
        raise ValueError(message)

    parser.error = refuse   # type: ignore[method-assign]  (no usage text, no exit: Hydra reports it)
    try:
        return parser.parse_args(list(argv))
    except (ValueError, SystemExit):
        return None


def _searchpath_overrides(overrides: list[str]) -> list[str]:
    """Entries that ``hydra.searchpath`` overrides add, in every spelling Hydra accepts (``+``/``++``,
    quoted items, ``hydra.searchpath=[pkg://x,file://y]``)."""
    entries: list[str] = []
    for arg in overrides:
        if "hydra.searchpath" not in arg:
            continue
        try:
            from hydra.core.override_parser.overrides_parser import OverridesParser

            [o] = OverridesParser.create().parse_overrides([arg])
            if not o.key_or_group.startswith("hydra.searchpath"):
                continue
            value = o.value()
        except Exception:   # Hydra will refuse the override itself; scan what it seems to name anyway
            key, _, raw = arg.lstrip("+~").partition("=")
            if not key.strip().startswith("hydra.searchpath"):
                continue
            value = [v.strip().strip("'\"") for v in raw.strip("[] ").split(",")]
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, str) and v.strip():
                entries.append(v.strip())
    return entries


def _trusted_entries() -> set[str]:
    """llmpipe's own primary config and Hydra's own configs: they configure Hydra by design."""
    from llmpipe.resources import conf_path, search_path

    conf = conf_path()
    return {"pkg://hydra.conf", "structured://", search_path("conf"), conf, "file://" + conf}


def _recipe_folders(argv: list[str]) -> list[str]:
    """Every search-path entry the command would compose from, as Hydra builds it: the primary config's
    folder (``--config-path``/``-cp``), the search-path plugins (llmpipe's: the bundled recipes and
    ``LLMPIPE_RECIPES``; a pip-installed recipe package's own plugin), ``--config-dir``/``-cd`` and every
    ``hydra.searchpath`` override -- less llmpipe's and Hydra's own configs."""
    import os

    from hydra_plugins.llmpipe_searchpath import recipe_entries
    from llmpipe.resources import conf_path, search_path

    args = _hydra_args(argv)
    entries: list[str] = [search_path("recipes"), *recipe_entries()]
    overrides = list(args.overrides or []) if args is not None else [a for a in argv if not a.startswith("-")]
    if args is not None:
        from hydra._internal.utils import compute_search_path_dir, create_config_search_path

        primary = args.config_path if args.config_path is not None else conf_path()
        main_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")
        try:
            path = create_config_search_path(compute_search_path_dir(main_file, None, primary))
            entries += [e.path for e in path.get_path() if e.path]
        except Exception:   # a plugin that fails here fails in Hydra too
            pass
        if args.config_dir is not None:
            entries.append("file://" + os.path.abspath(args.config_dir))
    entries += _searchpath_overrides(overrides)
    trusted = _trusted_entries()
    out: list[str] = []
    for e in entries:
        if e not in trusted and e not in out:
            out.append(e)
    return out


def _primary_files(argv: list[str]) -> list:
    """The primary config file a ``--config-name``/``-cn`` names, where it lies outside llmpipe's own conf
    folder (``-cn ../../shared/evil`` or a ``--config-path`` of someone else's)."""
    import os
    from pathlib import Path

    from llmpipe.resources import conf_path

    args = _hydra_args(argv)
    if args is None or (args.config_name is None and args.config_path is None):
        return []
    name = (args.config_name or "config")
    name = name if name.endswith(".yaml") else name + ".yaml"
    conf = Path(conf_path()).resolve()
    folders = [conf]
    if args.config_path is not None and not args.config_path.startswith("pkg://"):
        main_dir = os.path.dirname(os.path.abspath(__file__))
        folders.append(Path(main_dir, args.config_path).resolve())
    if args.config_dir is not None:
        folders.append(Path(args.config_dir).resolve())
    out = []
    for folder in folders:
        f = (folder / name).resolve()
        if f.is_file() and conf not in f.parents and f not in out:
            out.append(f)
    return out


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
    if "://" in entry:   # structured:// (the ConfigStore: code, not files)
        return None
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
    files = []
    for entry in _recipe_folders(argv):
        folder = _folder_of(entry)
        if folder is None or not folder.is_dir():
            continue
        files += sorted(folder.rglob("*.yaml"))
    files += _primary_files(argv)
    seen = set()
    for path in files:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            why = _hydra_settings(path.read_text(encoding="utf-8"))
        except OSError:
            continue
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            what = str(getattr(e, "problem", e))
            tabs = " (indent with spaces: YAML allows no tabs)" if "\\t" in what or "\t" in what else ""
            problems.append(Problem(str(path), NO_VALUE, f"not valid YAML{where}: {what}",
                                    fix="fix the file's YAML syntax" + tabs, rule="recipe-yaml"))
            continue
        if why:
            problems.append(Problem(
                str(path), NO_VALUE, f"a recipe file {why}; recipes cannot configure Hydra's callbacks, logging or "
                "plugins' targets (they can run code)",
                "the llmpipe families, hydra/sweeper and hydra/launcher choices, hydra.sweeper/launcher settings",
                "move hydra.* settings to the command line, e.g. hydra/launcher=joblib", rule="recipe-hydra"))
    return problems
