"""adapt: the initial LoRA adapter of the train stage, so that every sweep job that shares (model, lora.*)
starts from the same weights. Either a new adapter, created seeded (train.seed) on the run's base model
(base + merged model.adapter_name_or_path), or the last adapter of model.adapter_name_or_path, resumed
(unless lora.create_new_adapter). PiSSA adapters are created here: the train stage rebuilds the residual
base from the saved A0/B0. Publishes: adapter/ (PEFT format), params.json."""
from __future__ import annotations

import json

from llmpipe.data.published import read_source
from llmpipe.stages.base import StageContext


def run(ctx: StageContext) -> dict:
    import torch
    from peft import get_peft_model

    from llmpipe.models.adapters import load_adapter, lora_config, split_adapters
    from llmpipe.models.loading import load_causal_lm
    from llmpipe.models.patches import count_params

    cfg = ctx.obj
    torch.manual_seed(cfg.train.seed)
    model = load_causal_lm(read_source(ctx.input("load")), cfg, log=ctx.log)
    _, resume = split_adapters(cfg)
    if resume:
        peft_model = load_adapter(model, resume, cfg, trainable=True)
        what = f"resumed adapter {resume}"
    else:
        peft_model = get_peft_model(model, lora_config(cfg, model))
        lo = cfg.lora
        variant = ", ".join(n for n, on in (("rsLoRA", lo.use_rslora), ("DoRA", lo.use_dora),
                                             ("PiSSA init", lo.pissa_init)) if on)
        what = f"new LoRA r={lo.rank}" + (f" ({variant})" if variant else "")
    params = count_params(peft_model)
    peft_model.save_pretrained(str(ctx.out / "adapter"))
    (ctx.out / "params.json").write_text(json.dumps({**params, "adapter": what}, indent=2))
    ctx.log(f"{what}: {params['trainable_params']:,} trainable of {params['all_params']:,} parameters")
    return {"metrics": params}
