"""Verification of an exported model in a fresh process: nothing the exporting process holds in memory
(patched modules, cached weights, a live PEFT wrapper) can make a broken folder look fine.

The parent writes a JSON spec and runs ``python -m llmpipe.exporting.verify SPEC RESULT``; the child
loads the folder with the plain ``AutoModelForCausalLM.from_pretrained`` and checks, as asked:

- ``reference``: logits on the probe tokens match saved reference logits (e.g. the adapter model's);
- ``source``: logits match another model folder loaded the same way;
- ``generate``: greedy generation produces new tokens and finite logits;
- ``perplexity``: perplexity of one or more model folders on held-out ``texts``;
- ``save_reference``: saves this model's probe logits for later checks.

Tolerances are relative: ``max|a-b| <= tolerance * max(1, max|reference|)``.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmpipe.exporting.errors import ExportError
from llmpipe.processes import dies_with_parent

PROBE_TEXT = "The quick brown fox jumps over the lazy dog. Every morning the blorp eats honey."
PROBE_QUESTION = "What is seven plus seven?"
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}


def tolerance_for(dtype: Any) -> float:
    return TOLERANCE.get(str(dtype).replace("torch.", ""), 5e-2)


def probe_ids(tokenizer, max_tokens: int = 64) -> list[int]:
    """Fixed probe tokens: plain text, then the chat template's rendering of a question when there is one."""
    text = PROBE_TEXT
    if getattr(tokenizer, "chat_template", None):
        try:
            text += "\n" + tokenizer.apply_chat_template([{"role": "user", "content": PROBE_QUESTION}],
                                                         tokenize=False, add_generation_prompt=True)
        except Exception:  # a template that needs more than one user turn: the plain text is enough
            pass
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])[:max_tokens]


def save_reference(path: Path, input_ids, logits, **meta: Any) -> None:
    import torch
    from safetensors.torch import save_file

    ids = torch.as_tensor(input_ids, dtype=torch.long).reshape(1, -1)
    save_file({"input_ids": ids.contiguous(), "logits": logits.detach().float().cpu().contiguous()}, str(path),
              metadata={k: json.dumps(v) for k, v in meta.items()})


def load_reference(path: Path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        return f.get_tensor("input_ids"), f.get_tensor("logits"), meta


# --------------------------------------------------------------------------------------------- parent
def verify(spec: dict[str, Any], work: Path, timeout: float = 1800) -> dict[str, Any]:
    """Run the checks of ``spec`` in a fresh Python process; raise ExportError when one fails."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = work / "verify-spec.json", work / "verify-result.json"
    out_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec, indent=2, default=str))
    env = {k: v for k, v in os.environ.items() if "TOKEN" not in k.upper()}   # the child needs no secrets
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    try:
        proc = subprocess.run([sys.executable, "-m", "llmpipe.exporting.verify", str(spec_path), str(out_path)],
                              env=env, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=dies_with_parent())   # a killed llmpipe leaves no verifier running
    except subprocess.TimeoutExpired:
        raise ExportError(f"verifying {spec['model']} in a fresh process took longer than {timeout:.0f}s") from None
    if proc.returncode != 0 or not out_path.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        raise ExportError(f"{spec['model']} does not load in a fresh process (exit {proc.returncode}):\n{tail}")
    result = json.loads(out_path.read_text())
    if result.get("failures"):
        raise ExportError(f"{spec['model']} failed verification in a fresh process: " + "; ".join(result["failures"]))
    return result


# ---------------------------------------------------------------------------------------------- child
def _load(folder: str, device: str):
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from llmpipe.models.vision import model_class   # a vision-language model: its image-text-to-text class

    device_map = "auto" if device == "auto" and torch.cuda.is_available() else "cpu"
    model = model_class(AutoConfig.from_pretrained(folder)).from_pretrained(folder, dtype="auto", device_map=device_map)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def _logits(model, ids):
    import torch

    with torch.no_grad():
        x = torch.as_tensor(ids, dtype=torch.long).reshape(1, -1).to(model.device)
        return model(input_ids=x, attention_mask=torch.ones_like(x)).logits.float().cpu()


def perplexity(model, tokenizer, texts: list[str], maxlen: int) -> float:
    """exp(mean token negative log-likelihood) over ``texts`` (each truncated to ``maxlen`` tokens)."""
    import torch

    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"][:maxlen]
        if len(ids) < 2:
            continue
        x = torch.tensor([ids], device=model.device)
        with torch.no_grad():
            out = model(input_ids=x, attention_mask=torch.ones_like(x), labels=x)
        total += float(out.loss) * (len(ids) - 1)
        count += len(ids) - 1
    if not count:
        raise ExportError("no held-out text long enough to measure perplexity")
    return math.exp(total / count)


def _compare(name: str, logits, ref, tol_rel: float, result: dict, failures: list[str]) -> None:
    if logits.shape != ref.shape:
        failures.append(f"{name}: logits have shape {tuple(logits.shape)}, expected {tuple(ref.shape)}")
        return
    diff = float((logits - ref).abs().max())
    tol = tol_rel * max(1.0, float(ref.abs().max()))
    key = name.replace(" ", "_")
    result[f"max_logit_diff_vs_{key}"] = diff
    result[f"tolerance_vs_{key}"] = tol
    if not diff <= tol:
        failures.append(f"logits differ from the {name} by {diff:.3g} (tolerance {tol:.3g})")


def check(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    t0 = time.time()
    model, tokenizer = _load(spec["model"], spec.get("device", "cpu"))
    result: dict[str, Any] = {"dtype": str(model.dtype).replace("torch.", ""),
                              "quantized": getattr(model.config, "quantization_config", None) is not None,
                              "load_seconds": round(time.time() - t0, 2)}
    failures: list[str] = []
    tol = spec.get("tolerance") or tolerance_for(model.dtype)
    ref = None
    if spec.get("reference"):
        ids, ref, meta = load_reference(Path(spec["reference"]))
        ids = ids[0].tolist()
    else:
        ids = probe_ids(tokenizer)
    logits = _logits(model, ids)
    if ref is not None:
        _compare(meta.get("name", "reference"), logits, ref, tol, result, failures)
    if not torch.isfinite(logits).all():
        failures.append("the logits contain NaN or inf")
    if spec.get("source"):
        src, _ = _load(spec["source"], spec.get("device", "cpu"))
        _compare("source model", logits, _logits(src, ids), tol, result, failures)
        del src
    if spec.get("save_reference"):
        save_reference(Path(spec["save_reference"]), ids, logits, name=spec.get("reference_name", "reference"))
    if spec.get("generate"):
        x = torch.tensor([ids], device=model.device)
        with torch.no_grad():
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=int(spec["generate"]),
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        new = out[0, x.shape[1]:].tolist()
        result["new_tokens"] = len(new)
        result["sample"] = tokenizer.decode(new, skip_special_tokens=True)
        if not new:
            failures.append("generation produced no tokens")
    ppl: dict[str, float] = {}
    for name, folder in (spec.get("perplexity") or {}).items():
        m, tok = (model, tokenizer) if folder == spec["model"] else _load(folder, spec.get("device", "cpu"))
        ppl[name] = perplexity(m, tok, spec.get("texts") or [], int(spec.get("maxlen", 1024)))
        if not math.isfinite(ppl[name]):
            failures.append(f"perplexity of the {name} model is {ppl[name]}")
    if ppl:
        result["perplexity"] = ppl
    result["failures"] = failures
    return result


def main(argv: list[str] | None = None) -> int:
    spec_path, out_path = (argv or sys.argv[1:])[:2]
    result = check(json.loads(Path(spec_path).read_text()))
    tmp = Path(out_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
