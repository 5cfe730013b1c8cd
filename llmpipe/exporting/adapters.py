"""LoRA adapters to merge: where they are, whether they belong to this base model, and the merge itself.

An adapter belongs to a base when the base it records (``adapter_config.json``:
``base_model_name_or_path``) is the same model — same built-in build, same hub id, or a folder with the
same architecture — and every weight it holds fits a module of the base (shapes). Merging is done one
adapter at a time; after each one the merged model must reproduce the adapter model's logits and must
differ from the model before (an adapter that changes nothing is an error, not a silent no-op).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from llmpipe.exporting.errors import ExportError

_ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
              "num_key_value_heads", "vocab_size")
_BUILTIN_FOLDER = re.compile(r"^(builtin-.+)-([0-9a-f]{16})$")


def local_adapter(ref: str, model_cfg: Any) -> Path:
    """A local folder for adapter ``ref`` (a folder, or a hub id fetched into / found in the hub cache)."""
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "adapter_config.json").is_file():
            raise ExportError(f"model.adapter_name_or_path: {path} is not a PEFT adapter folder (no adapter_config.json)")
        return path.resolve()
    from llmpipe.models.hub import snapshot

    try:
        return snapshot(ref, model_cfg)
    except Exception as e:
        raise ExportError(f"adapter {ref}: not a local folder and not available from the hub "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _builtin(ref: str) -> tuple[str, str] | None:
    """(built-in name, build hash) of a built-in model folder, from its manifest or its folder name."""
    p = Path(ref)
    try:
        from llmpipe.models.tiny import COMPLETE

        manifest = json.loads((p / COMPLETE).read_text())
        return str(manifest["name"]), str(manifest["hash"])
    except (ImportError, OSError, ValueError, KeyError):
        pass
    m = _BUILTIN_FOLDER.match(p.name)
    return (m.group(1).replace("builtin-", "builtin:", 1), m.group(2)) if m else None


def _arch(ref: str) -> dict[str, Any] | None:
    try:
        cfg = json.loads((Path(ref) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: cfg.get(k) for k in _ARCH_KEYS}


def base_mismatch(recorded: str | None, base: str) -> tuple[str | None, str | None]:
    """(error, note) comparing the base an adapter records with the base of this run."""
    if not recorded or recorded == base or (Path(recorded).exists() and Path(recorded).resolve() == Path(base).resolve()):
        return None, None
    rb, bb = _builtin(recorded), _builtin(base)
    if rb and bb:
        if rb[0] != bb[0]:
            return f"it was trained on {rb[0]}, and this run's base model is {bb[0]}", None
        if rb[1] != bb[1]:
            return (f"it was trained on another build of {rb[0]} (build {rb[1]}; this run's is {bb[1]}): the base "
                    "weights differ, so the merged model would not be the trained one"), None
        return None, None
    ra, ba = _arch(recorded), _arch(base)
    if ra and ba:
        diff = [f"{k} {ra[k]} vs {ba[k]}" for k in _ARCH_KEYS if ra[k] != ba[k]]
        if diff:
            return f"its base {recorded} has another architecture ({', '.join(diff)})", None
        return None, f"adapter base {recorded} differs from {base} but has the same architecture"
    local = Path(recorded).exists() or recorded.startswith(("/", ".", "~"))
    if not local and not Path(base).exists() and recorded != base:
        return f"it was trained on {recorded}, and this run's base model is {base}", None
    return None, f"cannot compare the adapter's base {recorded} with {base}; relying on the weight shapes"


def _adapter_tensors(folder: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    f = folder / "adapter_model.safetensors"
    if f.is_file():
        with safe_open(str(f), framework="pt") as sf:
            return {k: tuple(sf.get_slice(k).get_shape()) for k in sf.keys()}
    b = folder / "adapter_model.bin"
    if b.is_file():
        import torch

        return {k: tuple(v.shape) for k, v in torch.load(str(b), map_location="cpu", weights_only=True).items()}
    raise ExportError(f"adapter {folder}: no adapter_model.safetensors or adapter_model.bin")


def shape_problems(folder: Path, model) -> list[str]:
    """Weights of the adapter that do not fit the base model (module missing, dimension mismatch)."""
    params = dict(model.named_parameters())
    fused3d = {n.rsplit(".", 1)[0] for n, p in params.items() if p.dim() == 3}
    out = []
    for key, shape in _adapter_tensors(folder).items():
        name = key[len("base_model.model."):] if key.startswith("base_model.model.") else key
        m = re.match(r"^(.*)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?\.weight$", name) or \
            re.match(r"^(.*)\.(lora_embedding_A|lora_embedding_B|lora_magnitude_vector)$", name)
        if m:
            module, part = m.group(1), m.group(2)
            weight = params.get(f"{module}.weight")
            fused = re.sub(r"(\.base_layer)+$", "", module)   # LoRA on fused 3-D expert weights (target_parameters)
            if weight is None and fused in fused3d:
                continue   # PEFT checks these shapes itself when it loads the adapter
            if weight is None:
                out.append(f"{module} (targeted by the adapter) does not exist in the base model")
                continue
            rows, cols = tuple(weight.shape)[:2] if weight.dim() >= 2 else (weight.shape[0], 1)
            want = {"lora_A": (1, cols), "lora_B": (0, rows), "lora_embedding_A": (1, rows),
                    "lora_embedding_B": (0, cols), "lora_magnitude_vector": (0, rows)}[part]
            if len(shape) <= want[0] or shape[want[0]] != want[1]:
                out.append(f"{module}.{part} has shape {shape}, the base module's weight is {tuple(weight.shape)}")
        elif name in params and tuple(params[name].shape) != shape:
            out.append(f"{name} has shape {shape}, the base model's is {tuple(params[name].shape)}")
    return out


def check_adapter(folder: Path, base: str, model) -> str | None:
    """Raise ExportError when the adapter does not belong to ``base``; return a note to log, if any."""
    try:
        cfg = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise ExportError(f"adapter {folder}: unreadable adapter_config.json ({e})") from None
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise ExportError(f"adapter {folder}: peft_type={cfg.get('peft_type')}; only LoRA adapters can be merged")
    error, note = base_mismatch(cfg.get("base_model_name_or_path"), base)
    if error is None:
        shapes = shape_problems(folder, model)
        if shapes:
            error = "its weights do not fit the base model: " + "; ".join(shapes[:4]) + \
                    (f" (and {len(shapes) - 4} more)" if len(shapes) > 4 else "")
    if error:
        raise ExportError(f"adapter {folder} does not match the base model {base}: {error}. Export it with the "
                          f"model it was trained on (model.name_or_path={cfg.get('base_model_name_or_path')})")
    return note


def merge_all(model, adapters: list[Path], probe, base: str, tolerance: float,
              log: Callable[[str], None]) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Merge ``adapters`` into ``model`` in order; returns (merged model, adapter-model logits of the last
    step, per-adapter report). Raises ExportError on a mismatch, a bad merge or a merge that changed nothing."""
    import torch
    from peft import PeftModel

    def logits(m):
        with torch.no_grad():
            return m(input_ids=probe, attention_mask=torch.ones_like(probe)).logits.float()

    before = logits(model)
    reference = before
    report = []
    for i, folder in enumerate(adapters, 1):
        note = check_adapter(folder, base, model)
        if note:
            log(note)
        peft_model = PeftModel.from_pretrained(model, str(folder))
        peft_model.eval()
        reference = logits(peft_model)
        model = peft_model.merge_and_unload()
        after = logits(model)
        diff = float((after - reference).abs().max())
        change = float((after - before).abs().max())
        tol = tolerance * max(1.0, float(reference.abs().max()))
        if not diff <= tol:
            raise ExportError(f"merging adapter {folder} gave a model whose logits differ from the adapter model "
                              f"by {diff:.3g} (tolerance {tol:.3g})")
        if change == 0.0:
            raise ExportError(f"merging adapter {folder} changed nothing: its LoRA weights are zero (was it trained?)")
        report.append({"adapter": str(folder), "max_logit_diff_vs_adapter": diff, "max_logit_change": change})
        log(f"merged adapter {i}/{len(adapters)} ({folder.name}): logits match the adapter model within {diff:.1e}, "
            f"changed by up to {change:.3g}")
        before = after
    return model, reference, report
