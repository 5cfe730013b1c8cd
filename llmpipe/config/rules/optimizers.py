"""Optimizer rules: GaLore, APOLLO, BAdam, Adam-mini, Muon and LoRA+ against each other, LoRA and distribution."""
from __future__ import annotations

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import (fmt, ft_type, get, launch_kind, problem, uses_deepspeed, uses_fsdp,
                                          world_size, zero_stage)

NAMES = {"galore.use_galore": "GaLore", "apollo.use_apollo": "APOLLO", "badam.use_badam": "BAdam",
         "badam.use_adam_mini": "Adam-mini", "muon.use_muon": "Muon"}
PACKAGES = {"galore.use_galore": ("galore_torch", "pip install galore-torch"),   # Muon is torch.optim.Muon
            "apollo.use_apollo": ("apollo_torch", "pip install apollo-torch"),
            "badam.use_badam": ("badam", "pip install 'badam>=1.2.1'"),
            "badam.use_adam_mini": ("adam_mini", "pip install adam-mini")}
OFF = {"galore.use_galore": "galore=none", "apollo.use_apollo": "apollo.use_apollo=false", "badam.use_badam": "badam=none",
       "badam.use_adam_mini": "badam.use_adam_mini=false", "muon.use_muon": "muon.use_muon=false"}
PROJECTED = ("galore.use_galore", "apollo.use_apollo")   # project gradients inside the optimizer step


def _on(cfg) -> list[str]:
    return [k for k in NAMES if get(cfg, k)]


def _layerwise(cfg) -> list[str]:
    return [f"{k.split('.')[0]}.layerwise" for k in PROJECTED if get(cfg, k) and get(cfg, f"{k.split('.')[0]}.layerwise")]


@rule("opt-lora-vs-custom", keys=["train.finetuning_type", "galore.use_galore", "apollo.use_apollo", "badam.use_badam"],
      bad=[["galore=default"], ["badam=layer"], ["apollo.use_apollo=true"]],
      good=[["galore=default", "train.finetuning_type=full"], ["badam=layer", "train.finetuning_type=full"],
            ["apollo.use_apollo=true", "train.finetuning_type=freeze"], ["muon.use_muon=true"]],
      env={"available_packages": frozenset({"galore_torch", "badam", "apollo_torch"})})
def lora_vs_custom(cfg, env):
    """GaLore, APOLLO and BAdam optimise the full weights; LoRA and OFT train adapters instead."""
    if ft_type(cfg) not in ("lora", "oft"):
        return
    for key in _on(cfg):
        if key not in ("badam.use_adam_mini", "muon.use_muon"):   # these two also train adapters
            yield problem("opt-lora-vs-custom", key, True,
                          f"{NAMES[key]} is a full-parameter optimizer and cannot train {ft_type(cfg).upper()} adapters",
                          f"{NAMES[key]} with train.finetuning_type=full or freeze",
                          f"train.finetuning_type=full, or {OFF[key]}")


@rule("opt-one-custom", keys=list(NAMES) + ["lora.loraplus_lr_ratio", "train.optim"],
      bad=[["galore=default", "badam=layer", "train.finetuning_type=full"],
           ["badam.use_adam_mini=true", "lora=plus"], ["badam.use_adam_mini=true", "train.optim=sgd"],
           ["apollo.use_apollo=true", "muon.use_muon=true", "train.finetuning_type=full"]],
      good=[["galore=default", "train.finetuning_type=full"], ["badam.use_adam_mini=true"], ["train.optim=sgd"],
            ["muon.use_muon=true"]],
      env={"available_packages": frozenset({"galore_torch", "badam", "adam_mini", "apollo_torch"})})
def one_custom(cfg, env):
    """At most one special optimizer: each replaces the optimizer, so a second one would be ignored."""
    on = _on(cfg) + (["lora.loraplus_lr_ratio"] if get(cfg, "lora.loraplus_lr_ratio") and ft_type(cfg) == "lora" else [])
    names = [NAMES.get(k, "LoRA+") for k in on]
    if len(on) > 1:
        yield problem("opt-one-custom", " + ".join(on), True, f"{fmt(names)} each replace the optimizer; only one can run",
                      "one of GaLore, APOLLO, BAdam, Adam-mini, Muon, LoRA+",
                      " or ".join(OFF.get(k, "lora.loraplus_lr_ratio=null") for k in on[1:]))
    optim = get(cfg, "train.optim", "adamw_torch")
    if on and optim != "adamw_torch":
        yield problem("opt-one-custom", "train.optim", optim, f"would be replaced by {names[0]}, which brings its own optimizer",
                      f"train.optim=adamw_torch (the default) with {names[0]}",
                      f"train.optim=adamw_torch, or {OFF.get(on[0], 'lora.loraplus_lr_ratio=null')}")


@rule("opt-galore-deepspeed", keys=["galore.use_galore", "apollo.use_apollo", "launch.deepspeed"],
      bad=[["galore=default", "train.finetuning_type=full", "launch=deepspeed_z2"],
           ["apollo.use_apollo=true", "train.finetuning_type=full", "launch=deepspeed_z2"]],
      good=[["galore=default", "train.finetuning_type=full", "launch=ddp"], ["launch=deepspeed_z2"]],
      env={"gpu_count": 2, "available_packages": frozenset({"galore_torch", "apollo_torch", "deepspeed"})})
def galore_deepspeed(cfg, env):
    """GaLore/APOLLO project gradients in the optimizer step, which DeepSpeed owns."""
    if not uses_deepspeed(cfg):
        return
    for key in PROJECTED:
        if get(cfg, key):
            yield problem("opt-galore-deepspeed", key, True, f"{NAMES[key]} does not work under DeepSpeed (launch.kind={launch_kind(cfg)})",
                          f"{NAMES[key]} with launch=local, ddp or fsdp", f"launch=ddp, or {OFF[key]}")


@rule("opt-layerwise", keys=["galore.layerwise", "apollo.layerwise", "launch.nproc_per_node",
                             "train.gradient_accumulation_steps"],
      bad=[["galore=layerwise", "train.finetuning_type=full", "launch=ddp"],
           ["galore=layerwise", "train.finetuning_type=full", "train.gradient_accumulation_steps=4"],
           ["apollo.use_apollo=true", "apollo.layerwise=true", "train.finetuning_type=full", "launch=ddp"]],
      good=[["galore=layerwise", "train.finetuning_type=full"], ["galore=default", "train.finetuning_type=full", "launch=ddp"]],
      env={"gpu_count": 2, "available_packages": frozenset({"galore_torch", "apollo_torch"})})
def layerwise(cfg, env):
    """Layer-wise GaLore/APOLLO steps each layer during backward: one process, no gradient accumulation."""
    for key in _layerwise(cfg):
        if world_size(cfg) > 1:
            yield problem("opt-layerwise", key, True, f"layer-wise updates cannot be synchronised across {world_size(cfg)} processes",
                          "layer-wise with a single process (launch=local)", f"{key}=false, or launch=local")
        gas = get(cfg, "train.gradient_accumulation_steps", 1)
        if gas > 1:
            yield problem("opt-layerwise", "train.gradient_accumulation_steps", gas,
                          "layer-wise updates step each layer immediately, so gradients cannot be accumulated",
                          "train.gradient_accumulation_steps=1 with layer-wise updates",
                          f"train.gradient_accumulation_steps=1 (raise per_device_train_batch_size), or {key}=false")


@rule("opt-badam-distributed", keys=["badam.mode", "launch.nproc_per_node", "launch.deepspeed"],
      bad=[["badam=ratio", "train.finetuning_type=full", "launch=ddp"],
           ["badam=layer", "train.finetuning_type=full", "launch=ddp"],
           ["badam=layer", "train.finetuning_type=full", "launch=deepspeed_z2"]],
      good=[["badam=ratio", "train.finetuning_type=full"], ["badam=layer", "train.finetuning_type=full", "launch=deepspeed_z3"]],
      env={"gpu_count": 2, "available_packages": frozenset({"badam", "deepspeed"})})
def badam_distributed(cfg, env):
    """Distributed BAdam exists only layer-wise under DeepSpeed ZeRO-3."""
    if not get(cfg, "badam.use_badam") or world_size(cfg) <= 1:
        return
    if get(cfg, "badam.mode") == "ratio":
        yield problem("opt-badam-distributed", "badam.mode", "ratio", f"ratio-wise BAdam runs in a single process only ({world_size(cfg)} requested)",
                      "badam=ratio with launch=local; badam=layer with launch=deepspeed_z3", "badam=layer launch=deepspeed_z3, or launch=local")
    elif zero_stage(cfg) != 3:
        yield problem("opt-badam-distributed", "badam.mode", "layer", f"distributed layer-wise BAdam needs DeepSpeed ZeRO-3 (launch.kind={launch_kind(cfg)})",
                      "launch=deepspeed_z3 or deepspeed_z3_offload", "launch=deepspeed_z3, or launch=local")


@rule("opt-packages", keys=list(NAMES),
      bad=[["galore=default", "train.finetuning_type=full"], ["badam=layer", "train.finetuning_type=full"],
           ["badam.use_adam_mini=true"], ["apollo.use_apollo=true", "train.finetuning_type=full"]],
      good=[["galore=none"], ["train.finetuning_type=full"], ["muon.use_muon=true"]],
      env={"missing_packages": frozenset({"galore_torch", "apollo_torch", "badam", "adam_mini"})})
def packages(cfg, env):
    """Special optimizers come from optional packages, which must be installed."""
    for key in _on(cfg):
        if key not in PACKAGES:
            continue
        module, install = PACKAGES[key]
        if not env.has(module):
            yield problem("opt-packages", key, True, f"{NAMES[key]} needs the Python module {module}, which is not installed",
                          "an installed optimizer", f"{install}, or {OFF[key]}")


@rule("opt-adam-mini-lora", keys=["badam.use_adam_mini", "train.finetuning_type"],
      bad=[["badam.use_adam_mini=true"]],
      good=[["badam.use_adam_mini=true", "train.finetuning_type=full"],
            ["badam.use_adam_mini=true", "train.finetuning_type=freeze"]],
      env={"available_packages": frozenset({"adam_mini"})})
def adam_mini_lora(cfg, env):
    """Adam-mini partitions the model's own weights by attention head; LoRA's low-rank matrices do not fit (it crashes)."""
    if get(cfg, "badam.use_adam_mini") and ft_type(cfg) == "lora":
        yield problem("opt-adam-mini-lora", "badam.use_adam_mini", True,
                      "partitions weights by attention head (q_proj/k_proj...), and LoRA's A/B matrices cannot be "
                      "split that way (adam-mini 1.1.1 fails on their shapes)",
                      "Adam-mini with train.finetuning_type=full or freeze",
                      "train.finetuning_type=full, or badam.use_adam_mini=false (lora=plus is LoRA's own optimizer)")


@rule("opt-muon-sharded", keys=["muon.use_muon", "launch.deepspeed", "launch.fsdp"],
      bad=[["muon.use_muon=true", "train.finetuning_type=full", "launch=deepspeed_z2"],
           ["muon.use_muon=true", "train.finetuning_type=full", "launch=fsdp"]],
      good=[["muon.use_muon=true", "train.finetuning_type=full", "launch=ddp"], ["launch=deepspeed_z2"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def muon_sharded(cfg, env):
    """Muon orthogonalises each weight matrix's whole update; DeepSpeed and FSDP hand the optimizer flattened or
    sharded pieces of the matrices instead."""
    if get(cfg, "muon.use_muon") and (uses_deepspeed(cfg) or uses_fsdp(cfg)):
        yield problem("opt-muon-sharded", "muon.use_muon", True,
                      f"needs each weight matrix whole, and launch.kind={launch_kind(cfg)} shards or flattens them",
                      "Muon with launch=local or ddp", "launch=ddp, or muon.use_muon=false")
