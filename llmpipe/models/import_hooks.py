"""Patch a library module right after it executes, wherever and whenever it is first imported.

``after_import(name, patch)`` calls ``patch`` at once when the module is already imported; otherwise it puts a
one-shot finder first on ``sys.meta_path`` that finds the module through the other finders, lets it execute and
then calls ``patch``. Used for the fixes llmpipe applies to libraries it may or may not import in a run
(``peft_probes``, ``bnb_layout``), so that no llmpipe module has to remember them.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable


class AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``name`` through the other finders and calls ``patch`` right after the module has executed."""

    def __init__(self, name: str, patch: Callable[[], None]):
        self.name, self.patch = name, patch
        self._busy = False
        self._real = None

    def find_spec(self, fullname, path=None, target=None):
        # a question without an import (transformers asks importlib.util.find_spec("peft")) leaves the hook in
        # place until the module really executes: removing it on the first question left the later import
        # unpatched
        if fullname != self.name or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return spec
        self._real = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._real.create_module(spec)

    def exec_module(self, module):
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self._real.exec_module(module)
        self.patch()


def after_import(name: str, patch: Callable[[], None]) -> None:
    """``patch()`` now if ``name`` is imported, else once right after it is (idempotent per name)."""
    if sys.modules.get(name) is not None:
        patch()
    elif not any(isinstance(f, AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, AfterImport(name, patch))
