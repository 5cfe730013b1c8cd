"""export: write the final model into export.dir — weights re-sharded at export.size (GB) as safetensors,
or as PyTorch .bin shards with export.legacy_format — with its config, generation config, tokenizer and
chat template, and a model card (README.md).

The folder is staged next to export.dir, reloaded in a fresh process and checked (logits against the
adapter model, the quantized model or the source model; it must generate), and only then swapped into
place with a marker file; a folder holding anything else is never overwritten. Not cached in the store:
a folder that already holds this export (same fingerprint, files intact) is left as it is. Two jobs that
export to one folder take turns under its lock (exporting.folder.locked): the second finds the first's
export current and reports it as cached."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from llmpipe.exporting.errors import ExportError
from llmpipe.exporting.folder import MARKER, check_destination, clean_stale, is_current, locked, publish, staging
from llmpipe.stages.base import StageContext

__all__ = ["ExportError", "MARKER", "check_destination", "run"]
_SKIP = {"README.md", MARKER, "COMPLETE", "_COMPLETE", "stage.json", "reference.safetensors"}
_TOKENIZER = ("tokenizer", "vocab", "merges.txt", "special_tokens_map.json", "added_tokens.json", "chat_template",
              "spiece.model", "preprocessor_config.json", "processor_config.json", "llmpipe-mm.json")


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def copy_model_files(src: Path, tok_dir: Path, out: Path) -> None:
    """Everything but the weights (config, generation config, quantization and custom-code files), then the
    tokenizer files (tokenizer, vocabulary, chat template)."""
    from llmpipe.exporting.shards import is_weight_file

    for p in sorted(Path(src).iterdir()):
        if p.is_file() and not is_weight_file(p.name) and p.name not in _SKIP and not p.name.startswith("."):
            shutil.copy2(p, out / p.name)
    if Path(tok_dir) != Path(src):
        for p in sorted(Path(tok_dir).iterdir()):
            if p.is_file() and p.name.startswith(_TOKENIZER):
                shutil.copy2(p, out / p.name)


def _set_dtype(out: Path, dtype: str) -> None:
    cfg = json.loads((out / "config.json").read_text())
    cfg["dtype"] = dtype
    cfg.pop("torch_dtype", None)
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def run(ctx: StageContext) -> dict:
    o = ctx.obj.export
    dest = Path(str(o.dir)).expanduser().absolute()
    check_destination(dest)
    if is_current(dest, ctx.fingerprint):
        clean_stale(dest)   # staging folders of killed runs (only those whose process is gone: no lock held)
        ctx.log(f"{dest} already holds this export")   # decided before importing torch: re-runs stay cheap
        return {"metrics": {}, "unchanged": True}
    with locked(dest, on_wait=lambda: ctx.log(f"another job is exporting to {dest}; waiting")):
        check_destination(dest)
        if is_current(dest, ctx.fingerprint):   # the job we waited for wrote this very export
            clean_stale(dest, holding_lock=True)
            ctx.log(f"{dest} already holds this export (written by another job)")
            return {"metrics": {}, "unchanged": True}
        return _export(ctx, o, dest)


def _export(ctx: StageContext, o: Any, dest: Path) -> dict:
    """Stage, verify and publish the export; the caller holds the export lock of ``dest``."""
    import torch

    from llmpipe.exporting import card
    from llmpipe.exporting.shards import iter_tensors, shard_bytes, weight_files, write_shards
    from llmpipe.exporting.source import model_folder, tokenizer_folder
    from llmpipe.exporting.verify import verify

    upstream = ctx.input("model")
    src = model_folder(upstream, ctx.obj.model)
    load_dir = ctx.inputs.get("load")
    quantized = bool((_json(src / "config.json") or {}).get("quantization_config"))
    cast = None if quantized or ctx.obj.infer.dtype == "auto" else getattr(torch, ctx.obj.infer.dtype)
    held_out = _json(upstream / "heldout.json")
    with staging(dest, holding_lock=True) as tmp:
        weights = write_shards(iter_tensors(weight_files(src)), tmp, shard_bytes(o.size), o.legacy_format, cast)
        copy_model_files(src, tokenizer_folder(upstream, src, load_dir), tmp)
        if cast is not None:
            _set_dtype(tmp, ctx.obj.infer.dtype)
        spec: dict[str, Any] = {"model": str(tmp), "device": o.device, "generate": 16}
        if (upstream / "reference.safetensors").is_file():
            spec["reference"] = str(upstream / "reference.safetensors")
        else:
            spec["source"] = str(src)
        if held_out:
            spec.update(texts=held_out, maxlen=o.quantization_maxlen, perplexity={"export": str(tmp)})
        from llmpipe.heartbeat import Heartbeat

        with Heartbeat("export: verifying in a fresh process"):
            verified = verify(spec, ctx.work / "verify")
        ctx.log(f"reloaded in a fresh process: {', '.join(f'{k} {v:.2e}' for k, v in verified.items() if k.startswith('max_logit_diff'))}"
                f"; generates {verified.get('new_tokens', 0)} tokens")
        stage_info = {role: ctx.inputs.get(role) for role in ("train", "merge")}
        merge_dir = stage_info["merge"] or upstream
        merge_info = _json(merge_dir / "merge.json")
        text = card.render(
            ctx.obj, fingerprint=ctx.fingerprint, title=dest.name,
            adapters=[a["adapter"] for a in (merge_info or {}).get("adapters", [])],
            train=_json(stage_info["train"] / "metrics.json") if stage_info["train"] else None,
            merge={"max_logit_diff_vs_adapter": max(a["max_logit_diff_vs_adapter"] for a in merge_info["adapters"])}
            if merge_info and merge_info.get("adapters") else None,
            quantize=_json(upstream / "quantize.json"), verified=verified, weights=weights)
        card.write(tmp, text)
        publish(tmp, dest, ctx.fingerprint, {"format": "bin" if o.legacy_format else "safetensors",
                                             "shards": weights["shards"], "quantized": quantized})
    shutil.rmtree(ctx.work, ignore_errors=True)
    ctx.log(f"exported to {dest} ({weights['shards']} shard(s), {weights['total_bytes'] / 1e6:.1f} MB)")
    metrics = {"shards": weights["shards"], "total_bytes": weights["total_bytes"],
               "legacy_format": bool(o.legacy_format), "generated_tokens": verified.get("new_tokens")}
    metrics.update({k: v for k, v in verified.items() if k.startswith("max_logit_diff")})
    if verified.get("perplexity"):
        metrics["perplexity"] = verified["perplexity"]["export"]
    return {"metrics": metrics}
