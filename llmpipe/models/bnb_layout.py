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

import sys

from llmpipe.models.import_hooks import after_import

MODULE = "bitsandbytes.nn.modules"


def _no_packed_layout() -> bool:
    return False


_no_packed_layout.llmpipe_off = True


def patch_loaded() -> None:
    module = sys.modules.get(MODULE)
    if module is not None and hasattr(module, "has_avx512bf16"):
        module.has_avx512bf16 = _no_packed_layout


def install() -> None:
    """Keep bitsandbytes' 4-bit layers in their trainable layout in this process (idempotent)."""
    after_import(MODULE, patch_loaded)
