"""Quantization family (``quantization.*``): on-the-fly quantization of the loaded model (QLoRA)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import param


@dataclass
class QuantizationConfig:
    method: str = param(
        "bnb", "Quantization backend. On-the-fly: bnb (bitsandbytes), hqq, eetq; gptq, awq, aqlm, quanto, mxfp4"
        " and fp8 describe pre-quantized checkpoints.", seed="quantization_method",
        choices=("bnb", "gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"),
        value_aliases={"bitsandbytes": "bnb"}, seed_default="bitsandbytes",
    )
    bit: Optional[int] = param(
        None, "Bits of on-the-fly quantization (bnb: 4, 8; hqq: 1-4, 8; eetq: 8); unset = no quantization.",
        seed="quantization_bit", choices=(1, 2, 3, 4, 8),
    )
    type: str = param(
        "nf4", "4-bit data type of bitsandbytes: nf4 (NormalFloat) or fp4.", seed="quantization_type",
        choices=("fp4", "nf4"),
    )
    double_quantization: bool = param(
        True, "Also quantize the quantization constants (bitsandbytes 4-bit).", seed="double_quantization",
    )
    device_map: Optional[str] = param(
        None, "Device map for inference with a 4-bit model (bitsandbytes >= 0.43; not for training).",
        seed="quantization_device_map", choices=("auto",),
    )
