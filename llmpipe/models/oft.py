"""OFT (orthogonal fine-tuning, ``train.finetuning_type=oft``): PEFT's OFT adapters rotate the inputs of the
targeted linear layers with block-diagonal orthogonal matrices (Cayley-parametrised), which keeps the angles
between a layer's neurons as pre-training left them.

The train stage trains the adapters and saves the *merged* model (``merge_and_unload``: each rotation folded into
its weight) as its ``model/`` output, so predict, export, chained steps and the other stages take it like a
fully fine-tuned model; the adapter itself is kept beside it in ``oft_adapter/`` (PEFT format, for
``PeftModel.from_pretrained``)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

ADAPTER_DIR = "oft_adapter"


def oft_config(cfg: Any, model: Any, task_type: str = "CAUSAL_LM"):
    """PEFT's OFTConfig from oft.* (oft.target=all: every linear layer but the output head)."""
    from peft import OFTConfig

    from llmpipe.models.adapters import _check_names as check_names
    from llmpipe.models.adapters import linear_module_names

    o = cfg.oft
    targets = linear_module_names(model) if o.target == ["all"] else list(o.target)
    check_names(model, targets, "oft.target")
    return OFTConfig(task_type=task_type, r=o.rank, oft_block_size=o.block_size, target_modules=targets,
                     module_dropout=o.module_dropout)


def attach(model, cfg: Any, log: Callable[[str], Any] = print):
    """``model`` with fresh, trainable OFT adapters (the rest frozen). PEFT shrinks the block size of a layer whose
    input size oft.block_size does not divide (or whose size oft.rank does not divide); ``log`` is told where."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, oft_config(cfg, model))
    for line in adjusted_blocks(peft_model, cfg):
        log(line)
    return peft_model


def adjusted_blocks(peft_model, cfg: Any) -> list[str]:
    """One line per layer kind whose block size differs from what oft.* asked for."""
    seen: dict[tuple[str, int, int], None] = {}
    for name, module in peft_model.named_modules():
        blocks = getattr(module, "oft_R", None)
        if not blocks or not hasattr(module, "in_features"):
            continue
        for rot in blocks.values():
            size = getattr(rot, "block_size", None)
            wanted = cfg.oft.block_size or (module.in_features // cfg.oft.rank if cfg.oft.rank else None)
            if size is not None and wanted and size != wanted:
                seen[(name.rsplit(".", 1)[-1], module.in_features, size)] = None
    key = "oft.block_size" if cfg.oft.block_size else "oft.rank"
    return [f"OFT: {key}={getattr(cfg.oft, key.split('.')[1])} does not divide {leaf}'s input size {n}: it uses "
            f"blocks of {size}" for leaf, n, size in seen]


def save(model, out_dir: Path, log: Callable[[str], Any] = print) -> None:
    """The adapter into ``out_dir``'s sibling oft_adapter/, the merged model into ``out_dir``. OFT on a quantized
    base (QOFT) merges into the base loaded unquantized, as llmpipe merges QLoRA adapters: folding a rotation
    into quantized weights would quantize them a second time."""
    from llmpipe.models.quantization import is_quantized

    adapter_dir = Path(out_dir).parent / ADAPTER_DIR
    model.save_pretrained(str(adapter_dir))
    base = model.get_base_model()
    if is_quantized(base):
        merged = merge_unquantized(str(base.config._name_or_path), adapter_dir)
        log("OFT: merged into the base loaded unquantized (the adapter was trained on the quantized base)")
    else:
        merged = model.merge_and_unload()
    merged.save_pretrained(str(out_dir))
    log(f"OFT: adapter in {adapter_dir.name}/, merged model in {Path(out_dir).name}/")


def merge_unquantized(source: str, adapter_dir: Path):
    """The model at ``source`` (unquantized, its saved dtype) with the OFT adapter of ``adapter_dir`` folded in."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(source, dtype="auto")
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
