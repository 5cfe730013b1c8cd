"""Inference-backend rules: vLLM/SGLang need a GPU and their package, and vLLM's own limits."""
from __future__ import annotations

import json

from llmpipe.config.rules._common import adapters, get, problem, quant_bit, stage
from llmpipe.config.validate import rule

PACKAGES = {"vllm": ("vllm", "pip install vllm"), "sglang": ("sglang", "pip install 'sglang>=0.4.5'")}


@rule("infer-backend-gpu", keys=["infer.backend"],
      bad=[["infer=vllm"], ["infer.backend=sglang"]], good=[["infer.backend=huggingface"]], env={"gpu_count": 0})
def backend_gpu(cfg, env):
    """vLLM and SGLang serve from CUDA GPUs only."""
    be = get(cfg, "infer.backend", "huggingface")
    if be in PACKAGES and not env.cuda:
        yield problem("infer-backend-gpu", "infer.backend", be, f"{be} runs only on a CUDA GPU and this machine has none",
                      "huggingface (runs on CPU)", "infer.backend=huggingface")


@rule("infer-backend-package", keys=["infer.backend"],
      bad=[["infer=vllm"], ["infer.backend=sglang"]], good=[["infer.backend=huggingface"]],
      env={"gpu_count": 1, "missing_packages": frozenset({"vllm", "sglang"})})
def backend_package(cfg, env):
    """The chosen inference engine must be installed."""
    be = get(cfg, "infer.backend", "huggingface")
    if be in PACKAGES and not env.has(PACKAGES[be][0]):
        yield problem("infer-backend-package", "infer.backend", be, f"the Python module {PACKAGES[be][0]} is not installed",
                      "huggingface, or an installed engine", f"{PACKAGES[be][1]}, or infer.backend=huggingface")


@rule("infer-vllm-limits", keys=["infer.backend", "quantization.bit", "model.rope_scaling", "model.adapter_name_or_path",
                                 "train.stage"],
      bad=[["infer=vllm", "quantization=bnb4"], ["infer=vllm", "model.rope_scaling=linear"],
           ["infer=vllm", "model.adapter_name_or_path='llmpipe-test/a,llmpipe-test/b'"],
           ["infer=vllm", "train.stage=rm", "data.dataset=demo_pref"]],
      good=[["infer=vllm"], ["infer=vllm", "model.adapter_name_or_path=llmpipe-test/a"], ["quantization=bnb4"]],
      env={"gpu_count": 1, "available_packages": frozenset({"vllm", "bitsandbytes"})})
def vllm_limits(cfg, env):
    """vLLM serves causal LMs, without on-the-fly quantization or RoPE scaling, with a single adapter."""
    if get(cfg, "infer.backend") != "vllm":
        return
    if quant_bit(cfg) is not None:
        yield problem("infer-vllm-limits", "quantization.bit", quant_bit(cfg), "vLLM cannot quantize on the fly (bitsandbytes/hqq/eetq)",
                      "quantization=none with vLLM (it loads GPTQ/AWQ checkpoints as they are)",
                      "quantization=none, or infer.backend=huggingface")
    if get(cfg, "model.rope_scaling"):
        yield problem("infer-vllm-limits", "model.rope_scaling", get(cfg, "model.rope_scaling"),
                      "llmpipe cannot pass RoPE scaling to vLLM", "model.rope_scaling=null with vLLM",
                      "model.rope_scaling=null, or infer.backend=huggingface")
    if len(adapters(cfg)) > 1:
        yield problem("infer-vllm-limits", "model.adapter_name_or_path", get(cfg, "model.adapter_name_or_path"),
                      f"vLLM serves one adapter; {len(adapters(cfg))} were given", "a single adapter with vLLM",
                      "merge the adapters first (export), or infer.backend=huggingface")
    if stage(cfg) == "rm":
        yield problem("infer-vllm-limits", "infer.backend", "vllm", "a reward model (train.stage=rm) scores text; it does not generate",
                      "infer.backend=huggingface for reward models", "infer.backend=huggingface")


@rule("infer-vllm-config", keys=["infer.vllm_config"],
      bad=[["infer.vllm_config='{max_num_seqs: 4'"], ["infer.vllm_config='[1, 2]'"]],
      good=[["infer.vllm_config='{\"max_num_seqs\": 4}'"], ["infer.vllm_config=null"]])
def vllm_config(cfg, env):
    """infer.vllm_config is a JSON object of extra vLLM engine arguments."""
    raw = get(cfg, "infer.vllm_config")
    if raw is None or not isinstance(raw, str):
        return
    try:
        value = json.loads(raw)
    except ValueError as e:
        yield problem("infer-vllm-config", "infer.vllm_config", raw, f"is not valid JSON ({e})",
                      'a JSON object, e.g. {"max_num_seqs": 4}', "infer.vllm_config='{\"max_num_seqs\": 4}'")
        return
    if not isinstance(value, dict):
        yield problem("infer-vllm-config", "infer.vllm_config", raw, "must be a JSON object (name: value pairs)",
                      'a JSON object, e.g. {"max_num_seqs": 4}', "infer.vllm_config='{\"max_num_seqs\": 4}'")
