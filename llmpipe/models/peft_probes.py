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

import sys

from llmpipe.models.import_hooks import after_import

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


def install() -> None:
    after_import("peft", patch_loaded)
