"""Recipe repositories on Hydra's search path: listing them (``llmpipe-tools ls``) and refusing to let one
silently shadow another (:func:`check_recipe_sources`, called by the pre-flight).

A recipe source is any entry of the search path: llmpipe's own ``pkg://llmpipe.conf``, the bundled
``pkg://llmpipe.recipes``, the folders/packages in ``LLMPIPE_RECIPES``, ``hydra.searchpath`` entries and
whatever a team package's search-path plugin adds. Hydra takes the first match; llmpipe reports a choice
that more than one source provides, instead of letting the order decide.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable

from llmpipe.problems import Problem

ENV_VAR = "LLMPIPE_RECIPES"


@dataclass(frozen=True)
class Source:
    path: str
    schema: str
    provider: str

    @property
    def uri(self) -> str:
        return f"{self.schema}://{self.path}"

    def __str__(self) -> str:
        return f"{self.uri} ({self.provider})"


def sources_of(config: Any) -> list[Source]:
    """The search path a composed config (with its ``hydra`` node) was built from, in order."""
    from omegaconf import OmegaConf

    raw = OmegaConf.select(config, "hydra.runtime.config_sources", default=None) or []
    return [Source(str(s.path), str(s.schema), str(s.provider)) for s in raw]


def _pkg_dir(path: str):
    """importlib.resources folder of ``pkg://module/sub`` (None if the package cannot be imported)."""
    import importlib.resources

    module, _, sub = path.partition("/")
    try:
        root = importlib.resources.files(module)
    except Exception:
        return None
    return root.joinpath(sub) if sub else root


def options(source: Source, group: str) -> list[str]:
    """Option names (file stems) that ``source`` provides for ``group``."""
    names: list[str] = []
    if source.schema == "file":
        folder = os.path.join(source.path, group)
        if os.path.isdir(folder):
            names = [f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")]
    elif source.schema == "pkg":
        folder = _pkg_dir(source.path)
        try:
            d = folder.joinpath(group) if folder is not None else None
            if d is not None and d.is_dir():
                names = [e.name[:-5] for e in d.iterdir() if e.name.endswith(".yaml") and e.is_file()]
        except Exception:
            names = []
    elif source.schema == "structured":
        from hydra.core.config_store import ConfigStore

        try:
            names = [n[:-5] if n.endswith(".yaml") else n for n in ConfigStore.instance().list(group)]
        except Exception:
            names = []
    return sorted(names)


def summary(source: Source, group: str, name: str, width: int = 72) -> str:
    """The first descriptive comment line of an option file (not the package header or a command)."""
    try:
        if source.schema == "file":
            with open(os.path.join(source.path, group, f"{name}.yaml"), encoding="utf-8") as f:
                text = f.read(4096)
        elif source.schema == "pkg":
            folder = _pkg_dir(source.path)
            text = folder.joinpath(group, f"{name}.yaml").read_text(encoding="utf-8")[:4096] if folder else ""
        else:
            return ""
    except (OSError, UnicodeDecodeError):
        return ""
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if not body or body.startswith("@package") or "python -m llmpipe" in body or "llmpipe-tools " in body:
            continue
        return body if len(body) <= width else body[:width - 3].rstrip() + "..."
    return ""


def has_option(source: Source, group: str, name: str) -> bool:
    return name in options(source, group)


def identity(source: Source) -> str:
    """The real folder behind a source (one folder reached twice, e.g. through LLMPIPE_RECIPES and
    hydra.searchpath, is one source, not a duplicate)."""
    if source.schema == "file":
        return os.path.realpath(source.path)
    if source.schema == "pkg":
        folder = _pkg_dir(source.path)
        try:
            return os.path.realpath(str(folder)) if folder is not None else source.uri
        except Exception:
            return source.uri
    return source.uri


def distinct(sources: Iterable[Source]) -> list[Source]:
    seen: set[str] = set()
    out = []
    for s in sources:
        key = identity(s)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def missing_sources(sources: Iterable[Source] = ()) -> list[tuple[str, str]]:
    """``(entry, why)`` for LLMPIPE_RECIPES entries and search-path entries that do not exist."""
    from hydra_plugins.llmpipe_searchpath import recipe_entries

    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in recipe_entries():
        seen.add(entry)
        why = _why_missing(entry)
        if why:
            out.append((entry, f"{why} (from {ENV_VAR})"))
    for s in sources:
        if s.uri not in seen and s.schema in ("file", "pkg") and s.provider not in ("hydra", "main"):
            why = _why_missing(s.uri)
            if why:
                out.append((s.uri, f"{why} (from {s.provider})"))
    return out


def _why_missing(uri: str) -> str:
    schema, _, path = uri.partition("://")
    if schema == "file" and not os.path.isdir(path):
        return "no such folder"
    if schema == "pkg":
        folder = _pkg_dir(path)
        if folder is None or not folder.is_dir():
            return "no such package"
    return ""


def check_recipe_sources(config: Any) -> list[Problem]:
    """Pre-flight problems of the search path: a chosen recipe (or any chosen group option) that several
    sources provide, and LLMPIPE_RECIPES / hydra.searchpath entries that do not exist."""
    from omegaconf import OmegaConf

    sources = sources_of(config)
    problems: list[Problem] = []
    for entry, why in missing_sources(sources):
        problems.append(Problem(
            ENV_VAR if ENV_VAR in why else "hydra.searchpath", entry, f"recipe source not found: {why}",
            "an existing folder (or pkg://<importable package>) holding recipe/*.yaml",
            f"create it, fix the path, or remove it from {ENV_VAR} / hydra.searchpath", rule="recipe_source",
        ))
    uris = {s.uri for s in sources}
    from hydra_plugins.llmpipe_searchpath import recipe_entries

    inactive = [e for e in recipe_entries() if e not in uris]
    if inactive and sources:
        problems.append(Problem(
            ENV_VAR, os.pathsep.join(inactive), "set, but these entries are not on Hydra's search path: the"
            " llmpipe search-path plugin (hydra_plugins/llmpipe_searchpath) is not loaded in this process",
            fix="reinstall llmpipe; meanwhile pass hydra.searchpath=[file://<folder>] on the command line",
            rule="recipe_source",
        ))
    choices = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
    for group, name in choices.items():
        if name is None or str(group).startswith("hydra/") or group == "hydra":
            continue
        holders = distinct(s for s in sources if has_option(s, str(group), str(name)))
        if len(holders) > 1:
            problems.append(duplicate_problem(str(group), str(name), holders))
    return problems


def duplicate_problem(group: str, name: str, holders: list[Source]) -> Problem:
    where = "; ".join(str(h) for h in holders)
    key = "+recipe" if group == "recipe" else group
    return Problem(
        key, name, f"'{group}/{name}.yaml' exists in {len(holders)} recipe sources: {where}; Hydra would"
        f" silently use the first ({holders[0].uri})", "one source per name",
        f"rename one (team recipes carry a team prefix, e.g. acme_dpo_qwen), or drop one folder from {ENV_VAR} /"
        " hydra.searchpath", rule="duplicate_recipe",
    )


def compose_sources(overrides: list[str]) -> list[Source]:
    """The search path llmpipe would use with these overrides (e.g. ``hydra.searchpath=[...]``)."""
    from llmpipe.config.compose import compose

    return sources_of(compose(overrides, return_hydra_config=True, job_name="llmpipe_tools"))


# --------------------------------------------------------------------------------------------- ls
def setup_ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group", default="recipe", help="config group to list (default: recipe; e.g. model, data)")
    p.add_argument("--check", action="store_true", help="exit 2 when a name is duplicated or a source is missing")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. 'hydra.searchpath=[file://../team]'")


def run_ls(args: argparse.Namespace) -> int:
    try:
        sources = compose_sources(list(args.overrides))
    except Exception as e:  # bad override etc.
        print(f"llmpipe-tools ls: could not compose the search path: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    group = args.group
    found: dict[str, list[Source]] = {}
    for s in sources:
        if s.provider == "hydra":
            continue
        for name in options(s, group):
            found.setdefault(name, []).append(s)
    found = {n: distinct(h) for n, h in found.items()}
    print(f"{group} sources (search order):")
    for s in sources:
        if s.provider not in ("hydra", "schema"):
            print(f"  {s.uri:<50} {s.provider}")
    print()
    if not found:
        print(f"no '{group}' options found")
    width = max([len(n) for n in found] + [len(group)])
    for name in sorted(found):
        holders = found[name]
        flag = "  DUPLICATE: also in " + ", ".join(h.uri for h in holders[1:]) if len(holders) > 1 else ""
        print(f"  {name:<{width}}  {holders[0].uri}{flag}")
        about = summary(holders[0], group, name)
        if about:
            print(f"  {'':<{width}}    {about}")
    dups = {n: h for n, h in found.items() if len(h) > 1}
    missing = missing_sources(sources)
    for n, h in sorted(dups.items()):
        print(f"warning: {duplicate_problem(group, n, h).message}", file=sys.stderr)
    for entry, why in missing:
        print(f"warning: recipe source {entry}: {why}", file=sys.stderr)
    if group == "recipe" and found:
        print(f"\nrun one with: python -m llmpipe +recipe=<name>")
    return 2 if args.check and (dups or missing) else 0
