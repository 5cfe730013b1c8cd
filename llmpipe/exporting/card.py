"""The model card (README.md) of an export: what the model is (base, adapters, data, training stage,
quantization), how well it did (train metrics, merge and quantization checks, the fresh-process
verification) and the command that reproduces it. Never a token: hub-token overrides are dropped and every
known secret (or anything shaped like a Hugging Face token) is redacted."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")
_TIMING = ("_runtime", "_per_second", "_preparation_time")


def _clean(text: str) -> str:
    from llmpipe.secrets import REDACTED, redact_text

    return _HF_TOKEN.sub(REDACTED, redact_text(str(text)))


def command_line() -> str:
    """The command of this job (Hydra's overrides when running under Hydra, else argv), secrets removed."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except Exception:
        overrides = sys.argv[1:]
    kept = [o for o in overrides if "token" not in o.split("=", 1)[0].lower()]
    return _clean("python -m llmpipe " + " ".join(shlex.quote(o) for o in kept)).strip()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _table(rows: dict[str, Any]) -> list[str]:
    rows = {k: v for k, v in rows.items() if v is not None and not isinstance(v, (dict, list))}
    if not rows:
        return []
    return ["| | |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in rows.items()], ""]


def render(o: Any, *, fingerprint: str, title: str, adapters: list[str], train: dict[str, Any] | None,
           merge: dict[str, Any] | None, quantize: dict[str, Any] | None, verified: dict[str, Any],
           weights: dict[str, Any]) -> str:
    """Markdown card. ``o`` is the typed config; the dicts are the stages' metrics (None when absent)."""
    base = str(o.model.name_or_path)
    tags = ["llmpipe", str(o.train.stage)] + (["lora"] if adapters else []) + (["gptq"] if quantize else [])
    front = ["---", "library_name: transformers", "tags:", *[f"- {t}" for t in tags]]
    if base.count("/") == 1 and not base.startswith((".", "/", "~")):
        front.append(f"base_model: {base}")
    front += ["---", ""]
    lines = [f"# {title}", "", "Exported by llmpipe (declarative LLM post-training pipelines).", ""]
    about = {
        "recipe / run": o.run.name,
        "base model": f"`{base}`",
        "adapters merged": ", ".join(f"`{a}`" for a in adapters) or None,
        "training": f"{o.train.stage} ({o.train.finetuning_type})" if train is not None else "none (export only)",
        "data": (",".join(o.data.dataset) or None) if train is not None else None,   # list flags, as written
        "held-out data": (",".join(o.data.eval_dataset) or None) if train is not None else None,
        "dtype": verified.get("dtype"),
        "quantization": (f"GPTQ {quantize['bits']}-bit, group size {quantize['group_size']}, calibrated on "
                         f"{o.export.quantization_dataset} "
                         f"({quantize['calibration_windows']} windows, {quantize['calibration_tokens']} tokens)")
        if quantize else None,
        "weights": f"{weights['shards']} file(s), {weights['total_bytes'] / 1e6:.1f} MB"
                   + (" (PyTorch .bin, legacy format)" if o.export.legacy_format else " (safetensors)"),
    }
    lines += ["## Model", "", *_table(about)]
    metrics: dict[str, Any] = {}
    for k, v in (train or {}).items():
        if k in ("train_loss", "global_step") or k.startswith("eval_") and not k.endswith(_TIMING):
            metrics[f"train: {k}"] = v
    if merge:
        metrics["merge: max logit diff vs adapter model"] = merge.get("max_logit_diff_vs_adapter")
    if quantize:
        metrics["held-out perplexity, unquantized"] = quantize.get("perplexity_unquantized")
        metrics["held-out perplexity, quantized"] = quantize.get("perplexity_quantized")
    for k, v in verified.items():
        if k.startswith("max_logit_diff_vs_"):
            metrics[f"export reloaded in a fresh process: {k.replace('_', ' ')}"] = v
    if metrics:
        lines += ["## Metrics", "", *_table(metrics)]
    lines += ["## Reproduce", "", "```bash", command_line(), "```", "", f"llmpipe stage fingerprint: `{fingerprint}`", ""]
    return _clean("\n".join(front + lines))


def write(folder: Path, text: str) -> None:
    (Path(folder) / "README.md").write_text(text, encoding="utf-8")
