"""adapt: create the initial LoRA adapter on the base model, seeded, so that every sweep job that shares
(model, lora.*) starts from the same weights. Publishes: adapter/ (PEFT format), params.json."""
from __future__ import annotations

import json

from llmpipe.stages.base import StageContext
from llmpipe.stages.load import read_source


def run(ctx: StageContext) -> dict:
    import torch
    from peft import get_peft_model

    from llmpipe.models.adapters import lora_config
    from llmpipe.models.loading import load_causal_lm

    torch.manual_seed(ctx.obj.train.seed)
    model = load_causal_lm(read_source(ctx.input("load")), ctx.obj)
    peft_model = get_peft_model(model, lora_config(ctx.obj, model))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    peft_model.save_pretrained(str(ctx.out / "adapter"))
    params = {"trainable_params": trainable, "all_params": total}
    (ctx.out / "params.json").write_text(json.dumps(params, indent=2))
    ctx.log(f"LoRA r={ctx.obj.lora.rank}: {trainable:,} trainable of {total:,} parameters")
    return {"metrics": params}
