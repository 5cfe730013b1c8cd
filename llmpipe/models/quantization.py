"""On-the-fly quantization of the base model for QLoRA training (``quantization.bit`` set).

- bitsandbytes 4-bit (nf4/fp4, double quantization) and 8-bit through transformers' BitsAndBytesConfig;
  runs on CPU too (bitsandbytes >= 0.45).
- HQQ through hqq's own API after loading: transformers 5's HqqConfig path raises NotImplementedError.
- EETQ through transformers' EetqConfig where the eetq package exists (CUDA, Python 3.10 wheels only);
  elsewhere a clear error.

Only training (and the adapter creation before it) quantizes: merging adapters always loads the base
unquantized, as merging into quantized weights is not possible.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

from llmpipe.errors import UserError


class QuantizationError(UserError):
    """The requested on-the-fly quantization cannot run here (message says why and what to do)."""


def training_device(cfg: Any) -> str:
    """The device of this process while training: the local GPU, or the CPU."""
    import torch

    if cfg.train.use_cpu or not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def _require(module: str, install: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise QuantizationError(f"quantization.method needs the Python module {module}, which is not installed: "
                                f"{install}")


def load_kwargs(cfg: Any, compute_dtype) -> dict[str, Any]:
    """from_pretrained keyword arguments that quantize while loading (bnb, eetq); {} for hqq or none."""
    q = cfg.quantization
    if q.bit is None or q.method == "hqq":
        return {}
    device_map: Any = q.device_map or {"": training_device(cfg)}
    if q.method == "bnb":
        _require("bitsandbytes", "pip install bitsandbytes")
        from transformers import BitsAndBytesConfig

        from llmpipe.models import bnb_layout

        bnb_layout.install()   # before the layers exist: they keep the layout they train and merge with

        if q.bit == 4:
            qc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.type,
                                    bnb_4bit_use_double_quant=q.double_quantization,
                                    bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_quant_storage=compute_dtype)
        elif q.bit == 8:
            qc = BitsAndBytesConfig(load_in_8bit=True)
        else:
            raise QuantizationError(f"quantization.bit={q.bit}: bitsandbytes quantizes to 4 or 8 bits")
        return {"quantization_config": qc, "device_map": device_map}
    if q.method == "eetq":
        import torch

        if not torch.cuda.is_available():
            raise QuantizationError("quantization.method=eetq: EETQ kernels run only on a CUDA GPU, and there is none")
        _require("eetq", "EETQ publishes wheels for CUDA and Python 3.10 only (or build it from source); "
                         "quantization.method=bnb works everywhere")
        from transformers import EetqConfig

        return {"quantization_config": EetqConfig("int8"), "device_map": device_map}
    raise QuantizationError(f"quantization.method={q.method} describes a pre-quantized checkpoint and cannot "
                            "quantize while loading; use bnb, hqq or eetq")


@contextmanager
def _quiet_tqdm():
    old = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old


def quantize_loaded(model, cfg: Any, compute_dtype):
    """Quantize an already loaded model in place (hqq); the model unchanged for the other methods."""
    q = cfg.quantization
    if q.bit is None or q.method != "hqq":
        return model
    _require("hqq", "pip install hqq")
    from hqq.core.quantize import BaseQuantizeConfig
    from hqq.models.hf.base import AutoHQQHFModel

    group = 64
    hidden = getattr(model.config, "hidden_size", group)
    while group > 8 and hidden % group:
        group //= 2
    with _quiet_tqdm():
        AutoHQQHFModel.quantize_model(model, quant_config=BaseQuantizeConfig(nbits=q.bit, group_size=group),
                                      compute_dtype=compute_dtype, device=training_device(cfg))
    return model


def is_quantized(model) -> bool:
    return bool(getattr(model, "is_quantized", False) or getattr(model, "hqq_quantized", False))


def prepare_for_training(model, cfg: Any):
    """PEFT's k-bit preparation: base weights frozen, norms and the rest in fp32, input grads for checkpointing."""
    if not is_quantized(model):
        return model
    from peft import prepare_model_for_kbit_training

    gc = not cfg.model.disable_gradient_checkpointing
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                           gradient_checkpointing_kwargs={"use_reentrant": cfg.model.use_reentrant_gc})


def describe(cfg: Any) -> str:
    q = cfg.quantization
    if q.bit is None:
        return "not quantized"
    if q.method == "bnb" and q.bit == 4:
        return f"bitsandbytes 4-bit {q.type}{' + double quantization' if q.double_quantization else ''}"
    return f"{q.method} {q.bit}-bit"
