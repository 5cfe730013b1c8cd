"""Keep PEFT from importing quantization back-ends that the model does not use.

For every layer it wraps, PEFT asks whether gptqmodel (GPTQ/AWQ layers) and torchao (torchao tensors) are
installed and, if so, imports them to compare layer types. Importing gptqmodel costs about two seconds,
prints a banner and changes environment variables (PYTORCH_ALLOC_CONF, CUDA_DEVICE_ORDER); torchao logs
warnings about CUDA libraries on CPU. A layer or tensor can only be one of their types when the package was
already imported — transformers imports it when it loads a model quantized with it — so until then the
answer "not available" is exact, and after that PEFT's own probe answers.

``install()`` applies this as soon as PEFT is imported (now, if it already is; otherwise from a one-shot
import hook), so no llmpipe module has to remember it.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

# PEFT modules that bound the probes with ``from ... import`` -> (probe name, back-end package)
_BOUND = {
    "peft.tuners.lora.gptq": [("is_gptqmodel_available", "gptqmodel")],
    "peft.tuners.lora.awq": [("is_gptqmodel_available", "gptqmodel")],
    "peft.tuners.lora.torchao": [("is_torchao_available", "torchao")],
    "peft.utils.quantization_utils": [("is_gptqmodel_available", "gptqmodel"), ("is_torchao_available", "torchao")],
    "peft.utils.other": [("is_gptqmodel_available", "gptqmodel")],
}


def _only_if_imported(probe, package: str):
    def probe_if_imported() -> bool:
        return package in sys.modules and probe()
    probe_if_imported.llmpipe_wrapped = True
    return probe_if_imported


def patch_loaded() -> None:
    """Wrap the probes in the PEFT modules imported so far (idempotent)."""
    for module_name, probes in _BOUND.items():
        module = sys.modules.get(module_name)
        for attr, package in probes:
            probe = getattr(module, attr, None)
            if probe is not None and not getattr(probe, "llmpipe_wrapped", False):
                setattr(module, attr, _only_if_imported(probe, package))


class _AfterPeftImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``peft`` through the other finders and patches it right after it has executed."""

    _busy = False

    def find_spec(self, fullname, path=None, target=None):
        # transformers asks importlib.util.find_spec("peft") without importing it: the hook stays installed
        # until peft really executes (it used to remove itself on that first question, and the later import
        # went unpatched: the gptqmodel banner and a slow train stage after a resume)
        if fullname != "peft" or self._busy:
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
    if "peft" in sys.modules:
        patch_loaded()
    elif not any(isinstance(f, _AfterPeftImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterPeftImport())
