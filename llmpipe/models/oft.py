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


def attach(model, cfg: Any):
    """``model`` with fresh, trainable OFT adapters (the rest frozen)."""
    from peft import get_peft_model

    return get_peft_model(model, oft_config(cfg, model))


def save(model, out_dir: Path, log: Callable[[str], Any] = print) -> None:
    """The adapter into ``out_dir``'s sibling oft_adapter/, the merged model into ``out_dir``."""
    adapter_dir = Path(out_dir).parent / ADAPTER_DIR
    model.save_pretrained(str(adapter_dir))
    merged = model.merge_and_unload()
    merged.save_pretrained(str(out_dir))
    log(f"OFT: adapter in {adapter_dir.name}/, merged model in {Path(out_dir).name}/")
