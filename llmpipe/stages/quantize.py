"""quantize: GPTQ-quantize the model to export (export.quantization_bit 2/3/4/8) on calibration text from
export.quantization_dataset (export.quantization_nsamples windows of export.quantization_maxlen tokens).

The saved model is then reloaded in a fresh process: it must generate, and its perplexity on held-out
documents of the calibration dataset (never used for calibration) is measured next to the unquantized
model's. Publishes: model/ (GPTQ weights, config, tokenizer), reference.safetensors (the reloaded model's
probe logits, for the export's check), heldout.json, quantize.json."""
from __future__ import annotations

import json

from llmpipe.stages.base import StageContext


def run(ctx: StageContext) -> dict:
    import torch
    from transformers import AutoTokenizer

    from llmpipe.exporting import calibration, gptq
    from llmpipe.exporting.source import device_for, model_folder, target_dtype, tokenizer_folder
    from llmpipe.exporting.verify import verify

    o = ctx.obj.export
    upstream = ctx.input("model")
    src = model_folder(upstream, ctx.obj.model)
    load_dir = ctx.inputs.get("load")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder(upstream, src, load_dir)))
    texts = calibration.read_texts(o.quantization_dataset, ctx.obj.data.dataset_dir)
    calib, held_out = calibration.split(texts, ctx.obj.train.seed)
    windows = calibration.samples(calib, tokenizer, o.quantization_nsamples, o.quantization_maxlen,
                                  ctx.obj.train.seed)
    if len(windows) < o.quantization_nsamples:
        ctx.log(f"the calibration text gives {len(windows)} window(s) of {o.quantization_maxlen} tokens, fewer "
                f"than export.quantization_nsamples={o.quantization_nsamples}: using all of them")
    device = device_for(o.device)
    dtype = target_dtype(ctx.obj.infer.dtype)
    if dtype == "auto":
        dtype = torch.float16 if device == "cuda" else torch.float32
    out = ctx.out / "model"
    from llmpipe.heartbeat import Heartbeat

    with Heartbeat(f"quantize: GPTQ {o.quantization_bit}-bit"):
        info = gptq.quantize(src, out, windows, o.quantization_bit, device=device, dtype=dtype, log=ctx.log)
    tokenizer.save_pretrained(str(out))
    (ctx.out / "heldout.json").write_text(json.dumps(held_out, indent=1, ensure_ascii=False))
    checked = verify({
        "model": str(out), "device": o.device, "generate": 16, "texts": held_out, "maxlen": o.quantization_maxlen,
        "perplexity": {"unquantized": str(src), "quantized": str(out)},
        "save_reference": str(ctx.out / "reference.safetensors"), "reference_name": "quantized model",
    }, ctx.work / "verify")
    ppl = checked["perplexity"]
    metrics = {"bits": o.quantization_bit, "group_size": info["group_size"],
               "calibration_windows": info["calibration_windows"], "calibration_tokens": info["calibration_tokens"],
               "heldout_documents": len(held_out), "perplexity_unquantized": ppl["unquantized"],
               "perplexity_quantized": ppl["quantized"], "perplexity_ratio": ppl["quantized"] / ppl["unquantized"],
               "generated_tokens": checked["new_tokens"]}
    (ctx.out / "quantize.json").write_text(json.dumps({**metrics, "format": info["format"],
                                                       "calibration_dataset": o.quantization_dataset,
                                                       "sample": checked.get("sample")}, indent=2, ensure_ascii=False))
    ctx.log(f"reloaded in a fresh process: held-out perplexity {ppl['unquantized']:.3f} unquantized -> "
            f"{ppl['quantized']:.3f} at {o.quantization_bit} bits; it generates: {checked.get('sample', '')[:60]!r}")
    return {"metrics": metrics}
