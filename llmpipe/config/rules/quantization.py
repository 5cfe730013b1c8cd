"""On-the-fly quantization rules (QLoRA): methods, bits, packages, and what a quantized model cannot do."""
from __future__ import annotations

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import adapters, ft_type, get, problem, quant_bit, trains, uses_fsdp, zero_stage

BITS = {"bnb": (4, 8), "hqq": (1, 2, 3, 4, 5, 6, 8), "eetq": (8,)}
PTQ = ("gptq", "awq", "aqlm", "quanto", "mxfp4", "fp8")
PACKAGES = {"bnb": ("bitsandbytes", "pip install bitsandbytes"), "hqq": ("hqq", "pip install hqq"),
            "eetq": ("eetq", "EETQ has wheels for CUDA + Python 3.10 only")}


@rule("quant-needs-lora", keys=["quantization.bit", "train.finetuning_type"],
      bad=[["quantization=bnb4", "train.finetuning_type=full"], ["quantization=bnb4", "train.finetuning_type=freeze"]],
      good=[["quantization=bnb4"], ["train.finetuning_type=full"]],
      env={"available_packages": frozenset({"bitsandbytes"})})
def needs_lora(cfg, env):
    """Quantized weights cannot be trained directly: quantization goes with LoRA (QLoRA) or OFT (QOFT)."""
    if quant_bit(cfg) is not None and ft_type(cfg) not in ("lora", "oft"):
        yield problem("quant-needs-lora", "quantization.bit", quant_bit(cfg),
                      f"a quantized model can only be trained through LoRA or OFT adapters; train.finetuning_type={ft_type(cfg)}",
                      "train.finetuning_type=lora or oft with quantization", "train.finetuning_type=lora, or quantization=none")


@rule("quant-model-changes", keys=["quantization.bit", "model.resize_vocab", "lora.pissa_init",
                                   "model.adapter_name_or_path", "lora.create_new_adapter"],
      bad=[["quantization=bnb4", "model.resize_vocab=true"], ["quantization=bnb4", "lora=pissa"],
           ["quantization=bnb4", "model.adapter_name_or_path='llmpipe-test/a,llmpipe-test/b'"],
           ["quantization=bnb4", "model.adapter_name_or_path=llmpipe-test/a", "lora.create_new_adapter=true"]],
      good=[["model.resize_vocab=true"], ["lora=pissa"], ["quantization=bnb4", "model.adapter_name_or_path=llmpipe-test/a"],
            ["model.adapter_name_or_path='llmpipe-test/a,llmpipe-test/b'", "lora.create_new_adapter=true"]],
      env={"available_packages": frozenset({"bitsandbytes"})})
def model_changes(cfg, env):
    """A quantized base cannot be resized, PiSSA-initialised, merged with adapters, or get a new adapter."""
    bit = quant_bit(cfg)
    if bit is None:
        return
    fix = "quantization=none, or prepare the model unquantized first"
    if get(cfg, "model.resize_vocab"):
        yield problem("quant-model-changes", "model.resize_vocab", True,
                      f"cannot resize the embeddings of a {bit}-bit quantized model", "model.resize_vocab=false", fix)
    if get(cfg, "lora.pissa_init"):
        yield problem("quant-model-changes", "lora.pissa_init", True,
                      "PiSSA decomposes the base weights, which are quantized here",
                      "lora.pissa_init=false with quantization", "lora.pissa_init=false, or run PiSSA init unquantized")
    ads = adapters(cfg)
    if len(ads) > 1:
        yield problem("quant-model-changes", "model.adapter_name_or_path", get(cfg, "model.adapter_name_or_path"),
                      f"{len(ads)} adapters would have to be merged into a quantized model, which is not possible",
                      "a single adapter with quantization", "merge the adapters (export) first and load the result")
    if ads and get(cfg, "lora.create_new_adapter"):
        yield problem("quant-model-changes", "lora.create_new_adapter", True,
                      "creating a new adapter merges the loaded one into the base, which is quantized here",
                      "lora.create_new_adapter=false with quantization", "lora.create_new_adapter=false")


@rule("quant-method-bits", keys=["quantization.method", "quantization.bit"],
      bad=[["quantization.method=bnb", "quantization.bit=2"], ["quantization.method=eetq", "quantization.bit=4"]],
      good=[["quantization.method=bnb", "quantization.bit=4"], ["quantization.method=hqq", "quantization.bit=2"],
            ["quantization.method=eetq", "quantization.bit=8"]])
def method_bits(cfg, env):
    """Each on-the-fly method supports its own bit widths (bnb 4/8, hqq 1-6/8, eetq 8)."""
    bit, method = quant_bit(cfg), get(cfg, "quantization.method", "bnb")
    if bit is not None and method in BITS and bit not in BITS[method]:
        allowed = "/".join(str(b) for b in BITS[method])
        yield problem("quant-method-bits", "quantization.bit", bit, f"quantization.method={method} cannot quantize to {bit} bits",
                      f"{allowed} bits for {method}", f"quantization.bit={BITS[method][-1 if method != 'bnb' else 0]}")


@rule("quant-on-the-fly-method", keys=["quantization.method", "quantization.bit"],
      bad=[["quantization.method=gptq", "quantization.bit=4"], ["quantization.method=awq", "quantization.bit=4"]],
      good=[["quantization.method=gptq"], ["quantization.method=hqq", "quantization.bit=4"]])
def on_the_fly_method(cfg, env):
    """gptq/awq/aqlm/quanto/mxfp4/fp8 describe pre-quantized checkpoints; they cannot quantize on load."""
    method = get(cfg, "quantization.method", "bnb")
    if quant_bit(cfg) is not None and method in PTQ:
        yield problem("quant-on-the-fly-method", "quantization.method", method,
                      f"cannot quantize a model while loading it (quantization.bit={quant_bit(cfg)} would be silently"
                      " ignored); a checkpoint already quantized with it is loaded as is, without quantization.bit",
                      "bnb, hqq or eetq for on-the-fly quantization",
                      "quantization.method=bnb, or quantization.bit=null to load a pre-quantized checkpoint;"
                      " to produce a GPTQ model use export.quantization_bit")


@rule("quant-packages", keys=["quantization.method", "quantization.bit"],
      bad=[["quantization=bnb4"], ["quantization=hqq4"], ["quantization.method=eetq", "quantization.bit=8"]],
      good=[["quantization=none"], ["quantization.method=hqq"]],
      env={"gpu_count": 1, "missing_packages": frozenset({"bitsandbytes", "hqq", "eetq"})})
def packages(cfg, env):
    """The quantization backend must be installed (EETQ has no wheel for this Python)."""
    method = get(cfg, "quantization.method", "bnb")
    if quant_bit(cfg) is None or method not in PACKAGES:
        return
    module, install = PACKAGES[method]
    if not env.has(module):
        yield problem("quant-packages", "quantization.method", method, f"needs the Python module {module}, which is not installed",
                      "an installed backend (bnb: pip install bitsandbytes)", f"{install}; or quantization=none")


@rule("quant-eetq-cuda", keys=["quantization.method"],
      bad=[["quantization.method=eetq", "quantization.bit=8"]],
      good=[["quantization.method=bnb", "quantization.bit=8"]],
      env={"gpu_count": 0, "available_packages": frozenset({"eetq", "bitsandbytes"})})
def eetq_cuda(cfg, env):
    """EETQ kernels are CUDA-only."""
    if get(cfg, "quantization.method") == "eetq" and quant_bit(cfg) is not None and not env.cuda:
        yield problem("quant-eetq-cuda", "quantization.method", "eetq", "EETQ runs only on a CUDA GPU and this machine has none",
                      "bnb (works on CPU)", "quantization.method=bnb")


@rule("quant-device-map-training", keys=["quantization.device_map", "train.do_train"],
      bad=[["quantization=bnb4", "quantization.device_map=auto", "train.do_train=true"]],
      good=[["quantization=bnb4", "quantization.device_map=auto", "train.do_train=false", "train.do_predict=true",
             "train.predict_with_generate=true", "data.val_size=0.1"], ["quantization=bnb4", "train.do_train=true"]],
      env={"available_packages": frozenset({"bitsandbytes"})})
def device_map_training(cfg, env):
    """device_map=auto spreads a quantized model over devices for inference; training needs one device per rank."""
    if get(cfg, "quantization.device_map") == "auto" and trains(cfg):
        yield problem("quant-device-map-training", "quantization.device_map", "auto",
                      "an automatic device map is for inference; a training run places the model itself",
                      "quantization.device_map=null when training", "quantization.device_map=null")


@rule("quant-device-map-unquantized", keys=["quantization.device_map", "quantization.bit"],
      bad=[["quantization.device_map=auto", "train.do_train=false", "train.do_predict=true",
            "train.predict_with_generate=true", "data.val_size=0.1"]],
      good=[["quantization=bnb4", "quantization.device_map=auto", "train.do_train=false", "train.do_predict=true",
             "train.predict_with_generate=true", "data.val_size=0.1"]],
      env={"available_packages": frozenset({"bitsandbytes"})})
def device_map_unquantized(cfg, env):
    """The automatic device map places a model quantized while loading (predict, evaluate, chat and serve with
    quantization.bit); an unquantized model is loaded on one device, so the map would place nothing."""
    if get(cfg, "quantization.device_map") == "auto" and quant_bit(cfg) is None:
        yield problem("quant-device-map-unquantized", "quantization.device_map", "auto",
                      "an automatic device map places a quantized model (quantization.bit), and none is set",
                      "unset, or with quantization.bit", "quantization.device_map=null, or quantization=bnb4")


@rule("quant-sharded", keys=["quantization.method", "quantization.bit", "launch.deepspeed", "launch.fsdp"],
      bad=[["quantization=bnb8", "launch=deepspeed_z3"], ["quantization=hqq4", "launch=deepspeed_z3"],
           ["quantization=bnb8", "quantization.device_map=auto"]],
      good=[["quantization=bnb4", "launch=deepspeed_z3"], ["quantization=bnb8", "launch=deepspeed_z2"]],
      env={"gpu_count": 2, "available_packages": frozenset({"bitsandbytes", "hqq", "deepspeed"})})
def sharded(cfg, env):
    """Only 4-bit bitsandbytes weights can be sharded (ZeRO-3 / FSDP) or spread by an automatic device map."""
    bit, method = quant_bit(cfg), get(cfg, "quantization.method", "bnb")
    if bit is None:
        return
    shard = "DeepSpeed ZeRO-3" if zero_stage(cfg) == 3 else "FSDP" if uses_fsdp(cfg) else None
    if method == "bnb" and bit == 8:
        for what in filter(None, (shard, "quantization.device_map=auto" if get(cfg, "quantization.device_map") else None)):
            yield problem("quant-sharded", "quantization.bit", bit, f"8-bit bitsandbytes weights cannot be used with {what}",
                          "quantization.bit=4 with ZeRO-3, FSDP or device_map=auto", "quantization=bnb4")
    elif method in ("hqq", "eetq") and shard:
        yield problem("quant-sharded", "quantization.method", method, f"{method} weights cannot be sharded by {shard}",
                      f"bnb 4-bit with {shard}", "quantization=bnb4, or launch=ddp")


def prequantized_method(cfg) -> str | None:
    """The quantization of the checkpoint itself: from a local config.json, else a PTQ quantization.method
    given without quantization.bit (which declares a pre-quantized checkpoint)."""
    import json
    from pathlib import Path

    path = Path(str(get(cfg, "model.name_or_path", ""))).expanduser() / "config.json"
    try:
        qc = json.loads(path.read_text()).get("quantization_config") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        qc = None
    if isinstance(qc, dict) and qc.get("quant_method"):
        return str(qc["quant_method"])
    method = get(cfg, "quantization.method", "bnb")
    return method if method in PTQ and quant_bit(cfg) is None else None


@rule("quant-prequantized", keys=["model.name_or_path", "quantization.method", "quantization.bit", "lora.use_dora",
                                  "launch.deepspeed", "launch.fsdp"],
      bad=[["quantization.method=gptq", "launch=deepspeed_z3"], ["quantization.method=awq", "launch=fsdp"],
           ["quantization.method=gptq", "lora=dora"]],
      good=[["quantization.method=gptq"], ["quantization.method=gptq", "launch=deepspeed_z2"], ["lora=dora"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def prequantized(cfg, env):
    """A pre-quantized (GPTQ/AWQ/...) checkpoint is not re-quantized, not sharded by ZeRO-3/FSDP, and gets no DoRA."""
    method = prequantized_method(cfg)
    if method is None or method in ("mxfp4", "fp8", "bitsandbytes"):
        return
    key = "model.name_or_path" if get(cfg, "quantization.method") != method else "quantization.method"
    if quant_bit(cfg) is not None:
        yield problem("quant-prequantized", "quantization.bit", quant_bit(cfg),
                      f"the checkpoint is already {method}-quantized; quantizing it again on load is not possible",
                      "quantization.bit=null for a pre-quantized checkpoint", "quantization.bit=null")
    shard = "DeepSpeed ZeRO-3" if zero_stage(cfg) == 3 else "FSDP" if uses_fsdp(cfg) else None
    if shard:
        yield problem("quant-prequantized", key, get(cfg, key), f"{method}-quantized weights cannot be sharded by {shard}",
                      "launch=ddp or deepspeed_z2 for a pre-quantized model", "launch=deepspeed_z2")
    if get(cfg, "lora.use_dora"):
        yield problem("quant-prequantized", "lora.use_dora", True, f"DoRA cannot decompose {method}-quantized weights",
                      "plain LoRA on a pre-quantized model", "lora.use_dora=false")
