"""What ``lora.target=all`` adapts on a mixture-of-experts model whose routed experts are fused 3-D parameters
(transformers 5: Qwen3-MoE, Mixtral, gpt-oss, DeepSeek-V3 store ``experts.gate_up_proj`` / ``experts.down_proj``
as one tensor per layer, not as linear layers).

* **The fused experts get LoRA too**, through PEFT's ``target_parameters`` (LoRA on an ``nn.Parameter``, one
  low-rank update per expert), as LLaMA-Factory's ``target=all`` reaches the experts' linear layers on models
  whose experts are still modules. The merge adds the per-expert update into the 3-D weight, so the merged and
  exported model carries it.
* **Linear layers PEFT would take away.** For transformers-4 adapters PEFT rewrites the LoRA targets
  ``gate_proj``/``up_proj``/``down_proj`` (and Mixtral's ``w1``/``w2``/``w3``/``gate``) of these model types
  to the fused experts, by leaf name and whatever the path. DeepSeek-V3's dense first block and its shared
  experts are ``nn.Linear`` with exactly those names, so a plain target list loses them, and the saved adapter
  does not load back for the merge. ``target=all`` therefore names those layers by their full module path, and
  :func:`keep_full_paths` (installed before any LoRA is made or loaded) keeps a full path that names a module
  of the model out of PEFT's rewrite: such a path cannot be a transformers-4 expert (those are no modules in
  transformers 5), so the rewrite would only be wrong. Everything else goes through PEFT's rewrite unchanged.
* PEFT's parameter LoRA has no dropout, no DoRA and no PiSSA initialisation: with one of them set,
  ``target=all`` on a model with fused experts is refused with the reason (:func:`parameter_lora_refusal`)
  instead of training without the experts. vLLM's LoRA serving may not load such an adapter: serve the merged
  model (the merge stage's output) there.
"""
from __future__ import annotations

import functools
import json
from typing import Any

EXPERT_PARAM_DIM = 3


def fused_expert_params(model: Any) -> list[str]:
    """Full names of the routed experts' fused 3-D weights (``...mlp.experts.gate_up_proj``), sorted."""
    import torch

    out = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            continue
        for pname, p in module.named_parameters(recurse=False):
            if p.dim() == EXPERT_PARAM_DIM and "expert" in name.rsplit(".", 1)[-1]:
                out.append(f"{name}.{pname}")
    return sorted(out)


def _declares_experts(config: dict) -> bool:
    """Whether config.json declares routed experts (num_experts, num_local_experts, n_routed_experts, ...)."""
    for cfg in (config, config.get("text_config") or {}):
        if any("expert" in key and isinstance(value, int) and value > 1 for key, value in cfg.items()):
            return True
    return False


@functools.lru_cache(maxsize=8)
def _fused_count(config_json: str) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    data = json.loads(config_json)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.for_model(data.pop("model_type"), **data))
    except Exception:   # an architecture this transformers cannot build here: the adapt stage checks  # noqa: BLE001
        return 0
    finally:
        hf_logging.set_verbosity(verbosity)
    return len(fused_expert_params(model))


def fused_expert_count(config: dict) -> int:
    """How many fused expert weights a causal LM of this config.json has (a meta-device instance, no weights;
    0 when it cannot be built here: remote code, an unknown type)."""
    if config.get("auto_map") or not config.get("model_type") or config.get("vision_config"):
        return 0
    if not _declares_experts(config):   # a dense model: no meta instance (keeps torch out of pre-flight)
        return 0
    return _fused_count(json.dumps(config, sort_keys=True))


def rewritten_by_peft(model: Any, leaf_names: list[str]) -> set[str]:
    """The leaf names among ``leaf_names`` that PEFT's transformers-4 compatibility rewrite would move from the
    model's linear layers to its fused experts (asked of PEFT itself on a copy of the config)."""
    try:
        from peft import LoraConfig
        from peft.utils.transformers_weight_conversion import convert_peft_config_for_transformers
    except ImportError:   # an older PEFT: no rewrite
        return set()
    probe = LoraConfig(r=1, target_modules=list(leaf_names))
    try:
        convert_peft_config_for_transformers(probe, model=model, conversions=None)
    except ValueError:   # e.g. a fused pair only half named: every mapped name counts as rewritten
        return {n for n in leaf_names if n in {"gate_proj", "up_proj", "down_proj", "w1", "w2", "w3", "gate"}}
    kept = set(probe.target_modules or ())
    return {n for n in leaf_names if n not in kept}


def all_targets(model: Any, leaf_names: list[str]) -> dict[str, Any]:
    """``target_modules`` / ``target_parameters`` of LoraConfig for ``lora.target=all`` (``leaf_names``: the
    linear layers' leaf names, output head excluded)."""
    import torch

    experts = fused_expert_params(model)
    if not experts:
        return {"target_modules": leaf_names, "target_parameters": None}
    keep_full_paths()
    moved = rewritten_by_peft(model, leaf_names)
    paths = sorted(name for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in moved)
    return {"target_modules": [n for n in leaf_names if n not in moved] + paths, "target_parameters": experts}


def parameter_lora_refusal(model: Any, n_experts: int, lora: Any) -> str | None:
    """Why ``lora.target=all`` cannot put LoRA on ``n_experts`` fused expert weights with the ``lora`` family's
    settings (PEFT's parameter LoRA has no dropout, no DoRA and no PiSSA initialisation), else None."""
    unsupported = [key for key, on in (("lora.dropout", lora.dropout), ("lora.use_dora", lora.use_dora),
                                       ("lora.pissa_init", lora.pissa_init)) if on]
    if not n_experts or not unsupported:
        return None
    return (f"{', '.join(unsupported)} set, and lora.target=all on {type(model).__name__} puts LoRA on its "
            f"{n_experts} fused expert weights through PEFT's parameter LoRA, which has no dropout, no DoRA and no "
            "PiSSA initialisation: unset them, or name the modules in lora.target (then the fused experts get no "
            "LoRA)")


_KEEP = {"installed": False}


def keep_full_paths() -> None:
    """Wrap PEFT's transformers-4 target rewrite so that a target naming the full path of a module the model
    has stays a module target (the rewrite maps transformers-4 expert modules, which transformers 5 models do
    not have; idempotent; a PEFT without the rewrite is left alone)."""
    if _KEEP["installed"]:
        return
    try:
        from peft.utils import transformers_weight_conversion as conv
    except ImportError:
        return
    original = conv.convert_peft_config_for_transformers

    def convert(peft_config, model, conversions):
        targets = getattr(peft_config, "target_modules", None)
        if not isinstance(targets, (list, set, tuple)) or not targets:
            return original(peft_config, model=model, conversions=conversions)
        # a module of the model (quantized, or a LoRA layer of an earlier adapter, included)
        modules = {n for n, _ in model.named_modules()}
        modules |= {n.removeprefix("base_model.model.") for n in modules}
        kept = {t for t in targets if "." in t and t in modules}
        if not kept:
            return original(peft_config, model=model, conversions=conversions)
        peft_config.target_modules = type(targets)(t for t in targets if t not in kept)
        try:
            original(peft_config, model=model, conversions=conversions)
        finally:
            peft_config.target_modules = set(peft_config.target_modules or ()) | kept
        return None

    conv.convert_peft_config_for_transformers = convert
    _KEEP["installed"] = True
