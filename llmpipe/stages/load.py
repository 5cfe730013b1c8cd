"""load: resolve the base model (building the built-in one if asked), load its tokenizer, and tokenize the
datasets. Publishes: tokenizer/, train/ and eval/ (datasets on disk; eval_each/<name>/ with
data.eval_on_each_dataset) or stream.json instead of train/ with data.streaming, source.json and
data_report.json (rows kept and dropped per dataset, with the first offenders; packing statistics)."""
from __future__ import annotations

import json

from llmpipe.stages.base import StageContext


def base_model_source(ctx: StageContext) -> str:
    """The model this chain step starts from: the previous step's model, or model.name_or_path."""
    from llmpipe.models.loading import resolve_source

    if "base" in ctx.inputs:
        return str(ctx.input("base") / "model")
    return resolve_source(str(ctx.obj.model.name_or_path), ctx.cache_root)


def _stream(ctx: StageContext, opts, tokenizer) -> tuple[dict, dict]:
    from llmpipe.data.streaming import prepare_stream

    tokenizer.save_pretrained(ctx.out / "tokenizer")  # the stream re-opens it (template applied below)
    spec, ev, report = prepare_stream(opts, tokenizer, ctx.out / "tokenizer")
    tokenizer.save_pretrained(ctx.out / "tokenizer")
    (ctx.out / "stream.json").write_text(json.dumps(spec, indent=2, ensure_ascii=False))
    metrics = {}
    if ev is not None:
        ev.save_to_disk(str(ctx.out / "eval"))
        metrics["eval_rows"] = len(ev)
    ctx.log(f"streaming {', '.join(opts.dataset)} (shuffle buffer {opts.buffer_size}); checked the first rows")
    return metrics, report.to_dict()


def _image_tokens(ctx: StageContext, source: str):
    """The image tokenization of a vision-language model (its family's layer, llmpipe.data.mm_plugins, read from
    the processor published next to the tokenizer), or None for a text-only model."""
    from llmpipe.data import mm_plugins

    v = ctx.obj.vision
    mm = mm_plugins.load(ctx.out / "tokenizer", max_pixels=v.image_max_pixels, min_pixels=v.image_min_pixels)
    if mm is None:   # an audio-language model (llmpipe.data.mm_audio), or a text-only one (None)
        from llmpipe.data import mm_audio

        return mm_audio.load(ctx.out / "tokenizer")
    from llmpipe.data.mm_video import attach

    attach(mm, source, v)   # videos (vision.video_*), for the families that read them
    from llmpipe.data.mm_omni import load

    return load(ctx.out / "tokenizer", mm, v) or mm   # Qwen2.5-Omni's thinker: its audio too


def _tokenized(ctx: StageContext, opts, tokenizer, mm=None) -> tuple[dict, dict]:
    from llmpipe.data import published
    from llmpipe.data.loader import build_datasets, prepare_tokenizer

    state = published.tokenized_state(opts.tokenized_path, ctx.fingerprint, opts.overwrite_cache) \
        if opts.tokenized_path else None
    if state == "load":
        prepare_tokenizer(tokenizer, opts)  # the saved tokenizer must carry the template, as when tokenizing
        bundle, report = published.read_tokenized(opts.tokenized_path)
        ctx.log(f"tokenized data read from data.tokenized_path={opts.tokenized_path}")
    else:
        from llmpipe.heartbeat import Heartbeat

        with Heartbeat(f"load: tokenizing {', '.join([*opts.dataset, *opts.eval_dataset])}"):
            bundle = build_datasets(opts, tokenizer, mm)
        report = bundle.report.to_dict()
        if state == "write":
            published.write_tokenized(bundle, opts.tokenized_path, ctx.fingerprint, report)
            ctx.log(f"tokenized data saved to data.tokenized_path={opts.tokenized_path}")
    metrics = published.save_bundle(bundle, ctx.out)
    tokenizer.save_pretrained(ctx.out / "tokenizer")
    return metrics, report


def _log_report(ctx: StageContext, report: dict) -> None:
    for rep in report.get("datasets", []):
        line = f"data {rep['dataset']} ({rep['split']}): {rep['kept']}/{rep['total']} rows kept"
        if rep["dropped"]:
            first = rep["examples"][0]
            line += f", {rep['dropped']} dropped (e.g. row {first['row']}: {first['reason']}; see data_report.json)"
        if rep["notes"]:
            line += "; " + ", ".join(f"{n} x {what}" for what, n in rep["notes"].items())
        ctx.log(line)
    for split, p in report.get("packing", {}).items():
        ctx.log(f"{'neat ' if p['neat'] else ''}packing {split}: {p['examples']} examples -> {p['sequences']} "
                f"sequences ({p['fill']:.0%} full)")


def run(ctx: StageContext) -> dict:
    from llmpipe.data import published
    from llmpipe.data.options import DataOptions
    from llmpipe.models.loading import load_tokenizer

    source = base_model_source(ctx)
    ctx.log(f"model: {source}")
    tokenizer = load_tokenizer(source, ctx.obj.model)
    opts = DataOptions.from_cfg(ctx.obj)
    from llmpipe.models.vision import publish_processor

    if publish_processor(source, ctx.out / "tokenizer", ctx.obj.vision, tokenizer):   # a VLM: its processor too
        from llmpipe.models import audio

        ctx.log("audio feature extractor published next to the tokenizer (audio-language model)"
                if audio.published(ctx.out / "tokenizer") else
                "image processor published next to the tokenizer (vision-language model)")
        if opts.packing:
            audio_rows = audio.published(ctx.out / "tokenizer")
            ctx.log("packing is off for audio rows (each row keeps its own clips)" if audio_rows else
                    "packing is off for image rows (each row keeps its own M-RoPE positions)")
    if not ctx.obj.data.dataset and not ctx.obj.data.eval_dataset and not ctx.obj.train.do_train:
        # nothing to tokenize (e.g. exporting given adapters): the model and its tokenizer are enough
        tokenizer.save_pretrained(str(ctx.out / "tokenizer"))
        metrics, report = {}, {"datasets": []}
    elif opts.streaming:
        metrics, report = _stream(ctx, opts, tokenizer)
    else:
        metrics, report = _tokenized(ctx, opts, tokenizer, _image_tokens(ctx, source))
    (ctx.out / "data_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    published.write_source(ctx.out, source)
    _log_report(ctx, report)
    return {"metrics": metrics}

