"""Hydra search-path plugin for llmpipe's recipe repositories.

Appends, after llmpipe's own config (``main``: ``file://<checkout>/conf`` or ``pkg://llmpipe.conf``):

* llmpipe's bundled recipe repository (``recipes/``: ``recipe/*.yaml`` plus optional ``model/`` and
  ``data/`` options) -- ``file://<checkout>/recipes`` in a source checkout, ``pkg://llmpipe.recipes``
  when installed from the wheel (see :mod:`llmpipe.resources`), and
* every entry of the environment variable ``LLMPIPE_RECIPES`` (``os.pathsep``-separated): a plain folder
  becomes ``file://<absolute path>``; ``pkg://...`` and ``file://...`` entries are kept as written.

Other Hydra apps in the same environment are left alone. Hydra imports this module while scanning
``hydra_plugins`` on every start, so it must stay cheap (only :mod:`llmpipe.resources`, at call time). A
missing folder is not an error here (raising would print a traceback): llmpipe's pre-flight reports it
(:func:`llmpipe.tools.recipes.check_recipe_sources`).
"""
from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

ENV_VAR = "LLMPIPE_RECIPES"
BUILTIN = "pkg://llmpipe.recipes"   # in a source checkout: file://<checkout>/recipes (llmpipe.resources)
PROVIDER = "llmpipe-recipes"
ENV_PROVIDER = "LLMPIPE_RECIPES"


def recipe_entries(value: str | None = None) -> list[str]:
    """The search-path entries named by ``LLMPIPE_RECIPES`` (or ``value``), normalised, in order."""
    raw = os.environ.get(ENV_VAR, "") if value is None else value
    out: list[str] = []
    for item in raw.split(os.pathsep):
        item = item.strip()
        if not item:
            continue
        if "://" not in item:
            item = "file://" + os.path.abspath(os.path.expanduser(item))
        if item not in out:
            out.append(item)
    return out


class LlmpipeRecipesSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # Only for llmpipe's own app (other Hydra apps in the same environment are left alone).
        from llmpipe.resources import search_path as llmpipe_path

        paths = [e.path for e in search_path.get_path()]
        conf = llmpipe_path("conf")
        if not ({"pkg://llmpipe.conf", conf, conf.replace("file://", "", 1)} & set(paths)):
            return
        builtin = llmpipe_path("recipes")
        if builtin in paths:
            return
        search_path.append(provider=PROVIDER, path=builtin)
        for entry in recipe_entries():
            search_path.append(provider=ENV_PROVIDER, path=entry)


def register() -> None:
    """Register the plugin with Hydra explicitly (idempotent).

    Hydra finds plugins by walking the ``hydra_plugins`` namespace package; that walk cannot see into a
    setuptools *editable* install (its import hook does not list modules), so the entry points call this
    before Hydra starts. For a regular (wheel) install the scan finds it too and this is a no-op.
    """
    from hydra.core.plugins import Plugins

    Plugins.instance().register(LlmpipeRecipesSearchPathPlugin)
