"""LoRA configuration from the lora family (PEFT)."""
from __future__ import annotations

from typing import Any


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def linear_module_names(model: Any) -> list[str]:
    """Leaf names of every linear layer except the output head (what lora.target=all means)."""
    import torch

    head = {"lm_head", "score", "v_head", "embed_out", "output"}
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in head:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def lora_config(cfg: Any, model: Any, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    lo = cfg.lora
    targets = linear_module_names(model) if lo.target.strip() == "all" else _split(lo.target)
    init: Any = True
    if lo.pissa_init:
        init = "pissa" if lo.pissa_iter == -1 else f"pissa_niter_{lo.pissa_iter}"
    return LoraConfig(
        task_type=task_type,
        r=lo.rank,
        lora_alpha=lo.alpha if lo.alpha is not None else 2 * lo.rank,
        lora_dropout=lo.dropout,
        target_modules=targets,
        modules_to_save=_split(lo.additional_target) or None,
        use_rslora=lo.use_rslora,
        use_dora=lo.use_dora,
        init_lora_weights=init,
    )
