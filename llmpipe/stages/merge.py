"""merge: merge LoRA adapters into the base model — the adapters named in model.adapter_name_or_path (each
one's model.adapter_folder sub-folder when that is set), in order, then the one trained in this run — on export.device, in infer.dtype (auto = the base's own dtype).

Every adapter is checked against the base (recorded base model, weight shapes); after each merge the
merged model must reproduce the adapter model's logits, and a merge that changed nothing is an error.
Publishes: model/ (safetensors, config, generation config, tokenizer with its chat template),
reference.safetensors (probe tokens and the adapter model's logits, for the export's fresh-process check),
merge.json."""
from __future__ import annotations

import json
from pathlib import Path

from llmpipe.data.published import read_source
from llmpipe.exporting.errors import ExportError
from llmpipe.stages.base import StageContext


def configured_adapter(ref: str, model_cfg) -> Path:
    """The local folder of adapter ``ref`` of model.adapter_name_or_path: with model.adapter_folder, its sub-folder
    of that name (as training loads it: PEFT's ``subfolder``)."""
    from llmpipe.exporting.adapters import local_adapter

    sub = model_cfg.adapter_folder
    if not sub:
        return local_adapter(ref, model_cfg)
    local = Path(ref).expanduser()
    path = local / sub if local.exists() else local_adapter(ref, model_cfg) / sub   # a hub id: its snapshot
    if not (path / "adapter_config.json").is_file():
        raise ExportError(f"model.adapter_folder={sub}: {ref}/{sub} is not a PEFT adapter folder (no "
                          "adapter_config.json)")
    return path.resolve()


def adapters_to_merge(ctx: StageContext) -> list[Path]:
    """Configured adapters (only where this step starts from model.name_or_path), then the trained one."""
    from llmpipe.config.rules._common import adapters
    from llmpipe.models.loading import resolve_source

    out: list[Path] = []
    if read_source(ctx.input("load")) == resolve_source(str(ctx.obj.model.name_or_path), ctx.cache_root):
        out += [configured_adapter(ref, ctx.obj.model) for ref in adapters(ctx.obj)]
    if "train" in ctx.inputs:
        out.append(ctx.input("train") / "adapter")
    if not out:
        raise ExportError("nothing to merge: no adapter was trained and model.adapter_name_or_path is empty")
    return out


def run(ctx: StageContext) -> dict:
    import torch
    from transformers import AutoTokenizer

    from llmpipe.exporting.adapters import merge_all
    from llmpipe.exporting.source import device_for, target_dtype
    from llmpipe.exporting.verify import probe_ids, save_reference, tolerance_for
    from llmpipe.models.loading import load_causal_lm

    base = read_source(ctx.input("load"))
    adapters = adapters_to_merge(ctx)
    trained = ctx.inputs.get("train")
    tok_dir = trained / "adapter" if trained and (trained / "adapter" / "tokenizer_config.json").is_file() \
        else ctx.input("load") / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    device = device_for(ctx.obj.export.device)
    model = load_causal_lm(base, ctx.obj, dtype=target_dtype(ctx.obj.infer.dtype)).to(device)
    if getattr(model.config, "quantization_config", None) is not None:
        raise ExportError(f"the base model {base} is quantized; adapters can only be merged into an unquantized "
                          "base (load the original weights, merge, then quantize with export.quantization_bit)")
    model.eval()
    ids = probe_ids(tokenizer)
    probe = torch.tensor([ids], device=model.device)
    merged, reference, report = merge_all(model, adapters, probe, base, tolerance_for(model.dtype), ctx.log)
    out = ctx.out / "model"
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    from llmpipe.models.vision import publish_processor

    publish_processor(ctx.input("load") / "tokenizer", out)   # a VLM's image processor goes with its weights
    save_reference(ctx.out / "reference.safetensors", ids, reference, name="adapter model")
    if "train" in ctx.inputs:
        report[-1]["adapter"] = f"trained in this run ({ctx.inputs['train'].name[:12]})"
    info = {"base": base, "dtype": str(merged.dtype).replace("torch.", ""), "device": device, "adapters": report}
    (ctx.out / "merge.json").write_text(json.dumps(info, indent=2))
    metrics = {"adapters_merged": len(report),
               "max_logit_diff_vs_adapter": max(r["max_logit_diff_vs_adapter"] for r in report),
               "max_logit_change": max(r["max_logit_change"] for r in report)}
    return {"metrics": metrics}
