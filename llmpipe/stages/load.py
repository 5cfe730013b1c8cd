"""load: resolve the base model (building the built-in one if asked), load its tokenizer, and tokenize the
datasets. Publishes: tokenizer/, train/ and eval/ (datasets on disk), source.json, data_report.json."""
from __future__ import annotations

import json

from llmpipe.stages.base import StageContext


def base_model_source(ctx: StageContext) -> str:
    """The model this chain step starts from: the previous step's model, or model.name_or_path."""
    from llmpipe.models.loading import resolve_source

    if "base" in ctx.inputs:
        return str(ctx.input("base") / "model")
    return resolve_source(str(ctx.obj.model.name_or_path), ctx.cache_root)


def run(ctx: StageContext) -> dict:
    from llmpipe.data.loader import build_datasets
    from llmpipe.models.loading import load_tokenizer

    source = base_model_source(ctx)
    ctx.log(f"model: {source}")
    tokenizer = load_tokenizer(source, ctx.obj.model)
    bundle = build_datasets(ctx.obj, tokenizer)
    tokenizer.save_pretrained(ctx.out / "tokenizer")
    bundle.train.save_to_disk(str(ctx.out / "train"))
    metrics = {"train_rows": len(bundle.train)}
    if bundle.eval is not None:
        bundle.eval.save_to_disk(str(ctx.out / "eval"))
        metrics["eval_rows"] = len(bundle.eval)
    report = bundle.report.to_dict() if hasattr(bundle.report, "to_dict") else bundle.report
    (ctx.out / "data_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    (ctx.out / "source.json").write_text(json.dumps({"model": source}, indent=2))
    for rep in getattr(bundle.report, "datasets", []):
        ctx.log(rep.summary().splitlines()[0])
    return {"metrics": metrics}


def read_source(load_dir) -> str:
    return json.loads((load_dir / "source.json").read_text())["model"]
