"""What a vision-language model trains: the vision.freeze_* switches (train_mm_proj_only is translated into
them by the config layer) for LoRA, freeze and full fine-tuning.

Groups (llmpipe.models.vision.FAMILIES): the vision tower, the projector (merger) and the language model.

- full / freeze: a frozen group gets ``requires_grad=False``; an unfrozen vision tower or projector is trained
  whole (under freeze tuning the language model keeps freeze.*'s choice of blocks unless it is frozen too);
- lora: ``lora.target=all`` adapts the linear layers of the language model, plus those of the vision tower when
  ``freeze_vision_tower=false``; never the projector, which is trained whole (``modules_to_save``) when
  ``freeze_multi_modal_projector=false``; ``freeze_language_model=true`` leaves the language model without
  adapters (then, with the tower frozen, the projector's own linear layers get the adapters, as PEFT needs at
  least one target). Named targets (``q_proj,v_proj``) are kept to the unfrozen groups the same way.
"""
from __future__ import annotations

from typing import Any

from llmpipe.errors import UserError


class NothingToTrain(UserError):
    """The vision switches freeze every part of the model."""


def _in(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def trainable_groups(cfg: Any) -> dict[str, bool]:
    v = cfg.vision
    return {"vision": not v.freeze_vision_tower, "projector": not v.freeze_multi_modal_projector,
            "language": not v.freeze_language_model}


def group_of(name: str, fam) -> str | None:
    """The group of parameter/module ``name`` (PEFT's ``base_model.model.`` prefix ignored)."""
    name = name.removeprefix("base_model.model.")
    for group, prefixes in (("projector", fam.projector), ("vision", fam.vision), ("language", fam.language)):
        if _in(name, prefixes):
            return group
    return None


def lora_targets(model: Any, cfg: Any, wanted: list[str], heads) -> tuple[list[str], list[str]]:
    """(full names of the linear layers LoRA adapts, modules trained whole) for a VLM; ``wanted`` is lora.target
    (``["all"]`` or leaf names), ``heads`` the output heads LoRA never adapts."""
    import torch

    from llmpipe.models.vision import family

    fam = family(model.config)
    on = trainable_groups(cfg)
    targets = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.rsplit(".", 1)[-1] in heads:
            continue
        group = group_of(name, fam)
        if group in (None, "projector") or not on[group]:
            continue
        if wanted == ["all"] or name.rsplit(".", 1)[-1] in wanted:
            targets.append(name)
    whole = list(fam.projector) if on["projector"] else []
    if not targets and whole:   # only the projector: PEFT needs a LoRA target, so its linear layers get adapters
        targets = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                   and group_of(n, fam) == "projector"]
        whole = []
    if not targets:
        raise NothingToTrain(_nothing(cfg, "LoRA"))
    return targets, whole


def _nothing(cfg: Any, how: str) -> str:
    v = cfg.vision
    return (f"{how} would train nothing: vision.freeze_vision_tower={v.freeze_vision_tower}, "
            f"vision.freeze_multi_modal_projector={v.freeze_multi_modal_projector}, "
            f"vision.freeze_language_model={v.freeze_language_model} (and lora.target={list(cfg.lora.target)}); "
            "unfreeze at least one part")


def apply(model: Any, cfg: Any, log=print) -> None:
    """Full and freeze tuning of a VLM: set requires_grad by the switches (after the method's own choice)."""
    from llmpipe.models.vision import family

    if cfg.train.finetuning_type == "lora":
        return   # decided by lora_targets when the adapter is created
    fam = family(model.config)
    on = trainable_groups(cfg)
    full = cfg.train.finetuning_type == "full"
    for name, p in model.named_parameters():
        group = group_of(name, fam)
        if group is None:
            continue
        if not on[group]:
            p.requires_grad_(False)
        elif group != "language" or full:
            p.requires_grad_(True)
    if not any(p.requires_grad for p in model.parameters()):
        raise NothingToTrain(_nothing(cfg, cfg.train.finetuning_type))
    parts = [g for g in ("vision", "projector", "language") if any(
        p.requires_grad and group_of(n, fam) == g for n, p in model.named_parameters())]
    log(f"vision-language model: training {', '.join(parts)}")
