"""LoRA through PEFT: the adapter configuration (lora family), adapters loaded from model.adapter_name_or_path
(all but the last merged into the base, the last resumed; all merged with lora.create_new_adapter), the
trainable initial adapter (PiSSA's residual base rebuilt exactly), and saving (PiSSA converted to plain LoRA)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from llmpipe.errors import UserError

HEADS = {"lm_head", "score", "v_head", "embed_out", "output"}


class AdapterError(UserError):
    """An adapter cannot be loaded or created as configured (message says why and what to do)."""


# quantized layers that replace nn.Linear without subclassing it (bitsandbytes' layers subclass it)
QUANTIZED_LINEARS = ("HQQLinear", "EetqLinear")


def linear_module_names(model: Any) -> list[str]:
    """Leaf names of every linear layer except the output head (what lora.target=all means)."""
    import torch

    names = set()
    for name, module in model.named_modules():
        linear = isinstance(module, torch.nn.Linear) or type(module).__name__ in QUANTIZED_LINEARS
        if linear and name.rsplit(".", 1)[-1] not in HEADS:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def _check_names(model: Any, names: list[str], key: str) -> None:
    """Every module name must exist in ``model`` (PEFT only complains when none of them does, and then
    silently adapts the rest)."""
    have = [n for n, _ in model.named_modules() if n]
    missing = [t for t in names if not any(n == t or n.endswith("." + t) for n in have)]
    if missing:
        raise AdapterError(f"{key}: {', '.join(missing)} not found in {type(model).__name__}; its linear layers: "
                           f"{', '.join(linear_module_names(model))}")


def lora_config(cfg: Any, model: Any, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    lo = cfg.lora
    targets = linear_module_names(model) if lo.target == ["all"] else list(lo.target)
    whole: list[str] = []
    params: list[str] | None = None
    if lo.target == ["all"]:   # fused MoE experts through target_parameters (llmpipe.models.moe_lora)
        from llmpipe.models.moe_lora import all_targets, parameter_lora_refusal

        split = all_targets(model, targets)
        targets, params = split["target_modules"], split["target_parameters"]
        why = parameter_lora_refusal(model, len(params or ()), lo)
        if why:
            raise AdapterError(why)
    from llmpipe.models.vision import is_vlm_config

    config = getattr(model, "config", None)
    if config is not None and is_vlm_config(config):   # a VLM (or Qwen2-Audio): the vision.freeze_* switches decide
        from llmpipe.models.vision_freeze import lora_targets

        targets, whole = lora_targets(model, cfg, list(lo.target), HEADS)
    _check_names(model, targets, "lora.target")
    _check_names(model, [m for m in lo.additional_target if m not in HEADS], "lora.additional_target")
    init: Any = True
    if lo.pissa_init:
        init = "pissa" if lo.pissa_iter == -1 else f"pissa_niter_{lo.pissa_iter}"
    layers = None
    if cfg.freeze.use_llama_pro:
        from llmpipe.models.llama_pro import expanded_layers

        layers = expanded_layers(model)
        if not layers:
            raise AdapterError("freeze.use_llama_pro with LoRA trains adapters on the blocks of an earlier LLaMA Pro "
                               "expansion, and this model was not expanded: expand it first with "
                               "train.finetuning_type=freeze freeze.use_llama_pro=true (e.g. as a pipeline.before step)")
    return LoraConfig(
        task_type=task_type,
        r=lo.rank,
        lora_alpha=lo.alpha if lo.alpha is not None else 2 * lo.rank,
        lora_dropout=lo.dropout,
        target_modules=targets,
        target_parameters=params,
        modules_to_save=list(lo.additional_target) + whole or None,
        use_rslora=lo.use_rslora,
        use_dora=lo.use_dora,
        init_lora_weights=init,
        layers_to_transform=layers,
    )


# --- adapters given by the user -------------------------------------------------------------------------------

def adapter_refs(cfg: Any) -> list[str]:
    return list(cfg.model.adapter_name_or_path)


def split_adapters(cfg: Any) -> tuple[list[str], str | None]:
    """(adapters merged into the base, adapter resumed by training)."""
    refs = adapter_refs(cfg)
    if not refs or cfg.lora.create_new_adapter or cfg.train.finetuning_type != "lora":
        return refs, None
    return refs[:-1], refs[-1]


def _load_kwargs(cfg: Any) -> dict[str, Any]:
    from llmpipe.models.hub import hub_kwargs

    kw = {k: v for k, v in hub_kwargs(cfg.model).items() if k in ("cache_dir", "token")}
    if cfg.model.adapter_folder:
        kw["subfolder"] = cfg.model.adapter_folder
    return kw


def load_adapter(model, ref: str, cfg: Any, *, trainable: bool):
    from peft import PeftModel

    from llmpipe.models.moe_lora import keep_full_paths

    keep_full_paths()   # target=all's full-path targets on MoE models load back as they were trained
    try:
        return PeftModel.from_pretrained(model, ref, is_trainable=trainable, **_load_kwargs(cfg))
    except (OSError, ValueError) as e:
        where = f"{ref}/{cfg.model.adapter_folder}" if cfg.model.adapter_folder else ref
        raise AdapterError(f"model.adapter_name_or_path: cannot load the adapter {where}: "
                           f"{str(e).splitlines()[0]}") from None


def merge_adapters(model, refs: list[str], cfg: Any, log: Callable[[str], None] = print):
    """Merge each adapter into the base in order (the base of this run = base + these adapters)."""
    for ref in refs:
        model = load_adapter(model, ref, cfg, trainable=False).merge_and_unload()
        log(f"merged adapter {ref} into the base model")
    return model


# --- the adapter a training stage trains ----------------------------------------------------------------------

def _is_pissa(config) -> bool:
    return str(getattr(config, "init_lora_weights", "")).lower().startswith("pissa")


def _subtract_initial(peft_model) -> int:
    """W_res = W - scaling * B0 @ A0 for every LoRA layer: the residual base PiSSA trains on."""
    import torch
    from peft.tuners.lora import LoraLayer
    from peft.utils import transpose

    count = 0
    with torch.no_grad():
        for module in peft_model.modules():
            if not isinstance(module, LoraLayer):
                continue
            for name in module.lora_A:
                base = module.get_base_layer()
                a, b = module.lora_A[name].weight.float(), module.lora_B[name].weight.float()
                w = transpose(base.weight.float(), module.fan_in_fan_out)
                w = w - module.scaling[name] * b @ a
                base.weight.data = transpose(w.to(base.weight.dtype), module.fan_in_fan_out)
                count += 1
    return count


def load_trainable(model, adapter_dir: str | Path, cfg: Any):
    """The initial adapter (published by the adapt stage) on the base, trainable. A PiSSA adapter holds the
    principal components of the base weights, so they are subtracted from the base again (exactly, from the
    saved A0/B0: no second SVD)."""
    from peft import PeftConfig, PeftModel

    config = PeftConfig.from_pretrained(str(adapter_dir))
    pissa, init = _is_pissa(config), config.init_lora_weights
    if pissa:
        config.init_lora_weights = True   # load A0/B0 as saved; the base is made residual below
    model = PeftModel.from_pretrained(model, str(adapter_dir), config=config, is_trainable=True)
    if pissa:
        model.peft_config["default"].init_lora_weights = init
        _subtract_initial(model)
    return model


def save_adapter(model, out_dir: Path, cfg: Any, initial_adapter: Path | None = None) -> str:
    """Save the trained adapter; with lora.pissa_convert, as a plain LoRA adapter of the original base
    (rank 2r: [B | B0] [A; -A0]), so that merging it into the unchanged base gives the trained model."""
    peft_config = model.peft_config.get("default") if hasattr(model, "peft_config") else None
    if not (peft_config is not None and _is_pissa(peft_config) and cfg.lora.pissa_convert and initial_adapter):
        model.save_pretrained(str(out_dir))
        return "adapter"
    from peft import get_peft_model_state_dict

    # PEFT's conversion keeps only lora_A/lora_B: the weights trained in full (modules_to_save: the score head of a
    # reward model, lora.additional_target) would be lost, and its reload of the initial adapter fails when they
    # are missing from it. Both get them here: the initial copy (never used for them) and the converted adapter.
    full = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()
            if ".lora_A." not in k and ".lora_B." not in k}
    with tempfile.TemporaryDirectory() as tmp:
        init_dir = Path(tmp) / "pissa_init"
        shutil.copytree(initial_adapter, init_dir)
        _add_tensors(init_dir, full)
        model.save_pretrained(str(out_dir), path_initial_model_for_weight_conversion=str(init_dir))
    _add_tensors(Path(out_dir), full)
    return "PiSSA adapter converted to LoRA"


def _add_tensors(adapter_dir: Path, tensors: dict) -> None:
    """Add ``tensors`` (where missing) to the adapter's adapter_model.safetensors."""
    if not tensors:
        return
    from safetensors.torch import load_file, save_file

    path = adapter_dir / "adapter_model.safetensors"
    state = load_file(str(path))
    missing = {k: v for k, v in tensors.items() if k not in state}
    if missing:
        save_file({**state, **missing}, str(path), metadata={"format": "pt"})
