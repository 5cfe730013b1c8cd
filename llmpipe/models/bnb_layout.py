"""bitsandbytes' 4-bit layers keep the weight layout they train and merge with, on every CPU.

bitsandbytes (0.50 here), on CPUs with AVX512-BF16 (AMD Zen 4, Intel Sapphire Rapids and later), repacks a
``Linear4bit`` layer's weight for a fused bf16 kernel the first time the layer runs in eval mode on an input that
needs no gradient (``Linear4bit.forward``), and keeps it repacked. From then on the layer

- computes in bf16, whatever ``bnb_4bit_compute_dtype`` says;
- passes no gradient back to its input (the kernel has no autograd formula: torch warns "an autograd kernel was not
  registered", and the adapters of every layer below stop learning);
- cannot be dequantized (merging raises ``shape '[64, 1]' is invalid for input of size 96``).

A QLoRA run meets that first eval-mode forward early: evaluation between training steps, the reference stage's
scoring, the DPO reference forward, a sample after training. On this project's CPU machines QLoRA/QOFT then trained
nothing or failed at the merge. llmpipe turns the repacking off: ``has_avx512bf16`` in ``bitsandbytes.nn.modules``
answers False, so every layer created afterwards keeps the ordinary layout and bitsandbytes' float32-capable,
differentiable path; installed before bitsandbytes is imported (``install``, by ``quiet.quiet_libraries`` and by the
loaders that quantize), or patched at once when it already is.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

MODULE = "bitsandbytes.nn.modules"


def _no_packed_layout() -> bool:
    return False


_no_packed_layout.llmpipe_off = True


def patch_loaded() -> None:
    module = sys.modules.get(MODULE)
    if module is not None and hasattr(module, "has_avx512bf16"):
        module.has_avx512bf16 = _no_packed_layout


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``bitsandbytes.nn.modules`` through the other finders and patches it right after it has executed."""

    _busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != MODULE or self._busy:
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
        patch_loaded()


def install() -> None:
    """Keep bitsandbytes' 4-bit layers in their trainable layout in this process (idempotent)."""
    if sys.modules.get(MODULE) is not None:
        patch_loaded()
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
