"""Where llmpipe's own folders are: ``conf/``, ``recipes/`` and the bundled ``data/``.

In an installed wheel they are the packages ``llmpipe.conf``, ``llmpipe.recipes`` and
``llmpipe.bundled_data``; in a source checkout (an editable install adds the checkout to sys.path) they
are the top-level folders next to ``llmpipe/``. Import-light: used by the Hydra entry point and the
search-path plugin.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

_PACKAGES = {"conf": "llmpipe.conf", "recipes": "llmpipe.recipes", "data": "llmpipe.bundled_data"}


def _checkout(name: str) -> Path | None:
    path = Path(__file__).resolve().parent.parent / name
    return path if (path / "__init__.py").is_file() else None


def _package(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(_PACKAGES[name])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def folder(name: str) -> Path:
    """The folder ``conf``, ``recipes`` or ``data`` (checkout first, then the installed package)."""
    path = _checkout(name) or _package(name)
    if path is None:
        raise FileNotFoundError(f"llmpipe's '{name}' folder is missing from this installation")
    return path


def search_path(name: str) -> str:
    """A Hydra search-path entry for ``conf`` or ``recipes``."""
    if _checkout(name) is not None:
        return "file://" + str(_checkout(name))
    return "pkg://" + _PACKAGES[name]


def conf_path() -> str:
    """``config_path`` for ``@hydra.main``: an absolute folder in a checkout, ``pkg://`` when installed."""
    checkout = _checkout("conf")
    return str(checkout) if checkout is not None else "pkg://llmpipe.conf"
