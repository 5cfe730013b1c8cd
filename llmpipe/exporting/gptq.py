"""GPTQ quantization through transformers' GPTQConfig (optimum + GPTQModel do the work; auto-gptq does not
import with transformers 5). Runs on CPU; on a GPU with ``export.device=auto``.

The calibration windows are passed already tokenized; they are removed from the quantization config before
saving (transformers would otherwise write the calibration text into config.json).
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from functools import partial, reduce
from pathlib import Path
from typing import Any, Callable, Iterator

from llmpipe.exporting.errors import ExportError

BITS = (2, 3, 4, 8)
GROUP_SIZES = (128, 64, 32, 16, 8)


def group_size_for(config: dict[str, Any]) -> int:
    """The largest usual GPTQ group size dividing the input width of every linear layer of the blocks
    (hidden size, attention output width, MLP width); -1 (one group per row) when none does."""
    hidden = int(config.get("hidden_size") or 0)
    heads = int(config.get("num_attention_heads") or 0)
    head_dim = int(config.get("head_dim") or (hidden // heads if heads else 0))
    widths = [w for w in (hidden, heads * head_dim, int(config.get("intermediate_size") or 0)) if w]
    if not widths:
        return 128
    g = reduce(math.gcd, widths)
    return next((s for s in GROUP_SIZES if g % s == 0), -1)


@contextmanager
def _quiet_bars() -> Iterator[None]:
    """optimum draws two nested progress bars per block and logs a line per layer; the stage logs one line."""
    import logging

    import optimum.gptq.quantizer as oq

    original, logger = oq.tqdm, logging.getLogger("optimum.gptq")
    level = logger.level
    oq.tqdm = partial(original, disable=True)
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        oq.tqdm = original
        logger.setLevel(level)


def missing_packages() -> list[str]:
    import importlib.util

    return [m for m in ("gptqmodel", "optimum") if importlib.util.find_spec(m) is None]


def quantize(src: Path, out: Path, windows: list[list[int]], bits: int, *, device: str, dtype: Any,
             log: Callable[[str], None]) -> dict[str, Any]:
    """Quantize the model in ``src`` with GPTQ on ``windows`` (token ids) and save it to ``out``."""
    if bits not in BITS:
        raise ExportError(f"export.quantization_bit={bits}: GPTQ supports {', '.join(map(str, BITS))} bits")
    missing = missing_packages()
    if missing:
        raise ExportError(f"GPTQ export needs {', '.join(missing)}: pip install optimum 'gptqmodel==7.6.0' "
                          "(or pip install 'llmpipe[export]')")
    import torch
    from transformers import AutoModelForCausalLM, GPTQConfig

    config = json.loads((Path(src) / "config.json").read_text())
    if config.get("quantization_config"):
        raise ExportError(f"{src} is already quantized ({config['quantization_config'].get('quant_method')}); "
                          "GPTQ needs the unquantized model")
    group = group_size_for(config)
    data = [{"input_ids": torch.tensor([w]), "attention_mask": torch.ones(1, len(w), dtype=torch.long)}
            for w in windows]
    qcfg = GPTQConfig(bits=bits, group_size=group, dataset=data, desc_act=False, sym=True,
                      model_seqlen=max(len(w) for w in windows))
    log(f"GPTQ {bits}-bit, group size {group}, {len(windows)} calibration windows of up to "
        f"{max(len(w) for w in windows)} tokens, on {device}")
    with _quiet_bars():
        model = AutoModelForCausalLM.from_pretrained(str(src), quantization_config=qcfg, dtype=dtype,
                                                     device_map="auto" if device == "cuda" else "cpu")
    saved = model.config.quantization_config
    for attr in ("dataset", "tokenizer"):
        if isinstance(saved, dict):
            saved[attr] = None
        elif hasattr(saved, attr):
            setattr(saved, attr, None)
    model.save_pretrained(str(out))
    written = json.loads((Path(out) / "config.json").read_text()).get("quantization_config") or {}
    if written.get("dataset") or written.get("quant_method") != "gptq":
        raise ExportError(f"the saved quantization config of {out} is not what was asked: {written}")
    return {"bits": bits, "group_size": group, "calibration_windows": len(windows),
            "calibration_tokens": sum(len(w) for w in windows), "format": written.get("checkpoint_format")}
