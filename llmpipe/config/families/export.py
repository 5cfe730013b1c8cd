"""Export family (``export.*``): write the final model (merged, optionally GPTQ-quantized) and push it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import param

# The file llmpipe writes last into export.dir: an export folder is llmpipe's (and finished) when it holds it.
EXPORT_MARKER = "llmpipe-export.json"


@dataclass
class ExportConfig:
    dir: Optional[str] = param(
        None, "Folder the exported model is written to (unset = no export stage).", seed="export_dir", volatile=True,
    )
    size: float = param(
        5.0, "Maximum shard size of the exported weights in GB (fractions allowed, e.g. 0.5).", seed="export_size",
        gt=0.0, seed_default=1,
    )
    device: str = param(
        "cpu", "Device used while exporting; auto = accelerators when present.", seed="export_device",
        choices=("cpu", "auto"),
    )
    quantization_bit: Optional[int] = param(
        None, "GPTQ-quantize the exported model to this many bits (unset = no quantize stage).",
        seed="export_quantization_bit", choices=(2, 3, 4, 8),
    )
    quantization_dataset: Optional[str] = param(
        None, "Calibration data for GPTQ: a dataset name or a JSON file with a `text` column.",
        seed="export_quantization_dataset",
    )
    quantization_nsamples: int = param(
        128, "Calibration samples used for GPTQ.", seed="export_quantization_nsamples", ge=1,
    )
    quantization_maxlen: int = param(
        1024, "Maximum tokens of one calibration sample.", seed="export_quantization_maxlen", ge=1,
    )
    legacy_format: bool = param(
        False, "Write PyTorch .bin shards instead of .safetensors.", seed="export_legacy_format",
    )
    hub_model_id: Optional[str] = param(
        None, "Hugging Face Hub repository to push the exported model to (token from HF_TOKEN).",
        seed="export_hub_model_id",
    )
    push_to: Optional[str] = param(
        None, "Also publish the exported model to a git remote URL or a local folder (push stage).",
    )
