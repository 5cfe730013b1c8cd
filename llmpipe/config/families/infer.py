"""Infer family (``infer.*``): inference backend (Hugging Face, vLLM, SGLang), dtype and KV cache."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import param


@dataclass
class InferConfig:
    backend: str = param(
        "huggingface", "Inference engine: huggingface (transformers generate), vllm or sglang (GPU). 'ktransformers'"
        " is recognised only to report that it was removed.", seed="infer_backend",
        choices=("huggingface", "vllm", "sglang", "ktransformers"), gpu_only=True,
    )
    dtype: str = param(
        "auto", "Weights/activations dtype at inference (auto = the model's own).", seed="infer_dtype",
        choices=("auto", "float16", "bfloat16", "float32"),
    )
    use_kv_cache: bool = param(True, "Use the KV cache while generating.", seed="use_kv_cache")
    use_cache: Optional[bool] = param(
        None, "Older name of use_kv_cache.", seed="use_cache", deprecated="translated to infer.use_kv_cache",
        seed_default=True,
    )
    vllm_maxlen: int = param(
        4096, "vLLM: maximum sequence length (prompt + response).", seed="vllm_maxlen", ge=1, seed_default=2048,
    )
    vllm_gpu_util: float = param(
        0.7, "vLLM: fraction of GPU memory it may use, in (0, 1].", seed="vllm_gpu_util", gt=0.0, le=1.0,
        seed_default=0.9,
    )
    vllm_enforce_eager: bool = param(False, "vLLM: disable CUDA graphs (eager mode).", seed="vllm_enforce_eager")
    vllm_max_lora_rank: int = param(32, "vLLM: maximum LoRA rank served.", seed="vllm_max_lora_rank", ge=1)
    vllm_config: Optional[str] = param(
        None, "vLLM: extra engine arguments as a JSON object string.", seed="vllm_config",
    )
    sglang_maxlen: int = param(4096, "SGLang: maximum sequence length (prompt + response).", seed="sglang_maxlen", ge=1)
    sglang_mem_fraction: float = param(
        0.7, "SGLang: fraction of GPU memory it may use, in (0, 1].", seed="sglang_mem_fraction", gt=0.0, le=1.0,
    )
    sglang_tp_size: int = param(
        -1, "SGLang: tensor-parallel size (-1 = every visible GPU).", seed="sglang_tp_size", ge=-1,
    )
