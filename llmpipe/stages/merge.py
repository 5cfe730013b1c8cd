"""merge: merge the trained LoRA adapter into its base model and save safetensors. Checks that the merged
model reproduces the adapter model's logits, and refuses a merge that changed nothing.
Publishes: model/ (weights, config, tokenizer, generation config), merge.json."""
from __future__ import annotations

import json

from llmpipe.stages.base import StageContext
from llmpipe.stages.export import ExportError
from llmpipe.stages.load import read_source


def run(ctx: StageContext) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from llmpipe.models.loading import load_causal_lm

    adapter = ctx.input("train") / "adapter"
    base = read_source(ctx.input("load"))
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    model = load_causal_lm(base, ctx.obj, dtype=torch.float32)
    probe = tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt")
    with torch.no_grad():
        base_logits = model(**probe).logits
        peft_model = PeftModel.from_pretrained(model, str(adapter))
        adapter_logits = peft_model(**probe).logits
        merged = peft_model.merge_and_unload()
        merged_logits = merged(**probe).logits
    diff = (merged_logits - adapter_logits).abs().max().item()
    change = (merged_logits - base_logits).abs().max().item()
    if diff > 1e-3:
        raise ExportError(f"the merged model does not reproduce the adapter model (max logit diff {diff:.2e})")
    if change == 0.0:
        raise ExportError("merging the adapter changed nothing: the adapter's weights are zero (was it trained?)")
    merged.save_pretrained(str(ctx.out / "model"))
    tokenizer.save_pretrained(str(ctx.out / "model"))
    info = {"max_logit_diff_vs_adapter": diff, "max_logit_change_vs_base": change}
    (ctx.out / "merge.json").write_text(json.dumps(info, indent=2))
    ctx.log(f"merged; logits match the adapter model within {diff:.1e}")
    return {"metrics": info}
