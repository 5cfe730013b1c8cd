"""LLaMA Pro block expansion (freeze.use_llama_pro): insert copies of decoder blocks whose output projections
are zero, so each new block is the identity at first and the expanded model computes exactly what the base
did; only the new blocks are then trained.

With N blocks and n new ones (N divisible by n), a copy follows every N/n-th block. The config of the
expanded model records which blocks are new (``llmpipe_llama_pro``), so a later run (LoRA with
use_llama_pro, or another freeze step) trains the same blocks instead of expanding again.
"""
from __future__ import annotations

import copy
from typing import Any

from llmpipe.errors import UserError
from llmpipe.models.freeze import decoder_layers

MARKER = "llmpipe_llama_pro"
# the last projection of the attention and the MLP of a block, by architecture family
OUTPUT_PROJECTIONS = ("o_proj", "down_proj", "out_proj", "dense_4h_to_h", "c_proj", "wo", "w2", "fc2", "dense")


class LlamaProError(UserError):
    """The model cannot be block-expanded as configured."""


def expanded_layers(model) -> list[int] | None:
    """Indices of the blocks added by an earlier expansion (recorded in the config), or None."""
    value = getattr(model.config, MARKER, None)
    return list(value) if value else None


def _zero_outputs(block) -> int:
    import torch

    zeroed = 0
    for name, module in block.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in OUTPUT_PROJECTIONS:
            torch.nn.init.zeros_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
            zeroed += 1
    return zeroed


def expand(model, new_blocks: int) -> list[int]:
    """Insert ``new_blocks`` identity blocks; returns the indices of the new blocks in the expanded model."""
    import torch

    inner, attr = decoder_layers(model)
    layers = getattr(inner, attr)
    total = len(layers)
    if new_blocks < 1 or total % new_blocks:
        raise LlamaProError(f"freeze.use_llama_pro: the model has {total} blocks, which cannot be split into "
                            f"{new_blocks} equal groups; freeze.trainable_layers (the number of new blocks) must "
                            f"divide {total}")
    stride = total // new_blocks
    blocks, new_ids = [], []
    for i, block in enumerate(layers):
        blocks.append(block)
        if (i + 1) % stride == 0:
            clone = copy.deepcopy(block)
            if _zero_outputs(clone) < 2:
                raise LlamaProError(f"freeze.use_llama_pro: cannot find the attention and MLP output projections "
                                    f"of {type(block).__name__} (looked for {', '.join(OUTPUT_PROJECTIONS)})")
            new_ids.append(len(blocks))
            blocks.append(clone)
    for idx, block in enumerate(blocks):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = idx   # the KV cache is indexed by layer
    setattr(inner, attr, torch.nn.ModuleList(blocks))
    cfg = model.config
    cfg.num_hidden_layers = len(blocks)
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types:
        types = []
        for i, t in enumerate(layer_types):
            types.append(t)
            if (i + 1) % stride == 0:
                types.append(t)
        cfg.layer_types = types
    setattr(cfg, MARKER, new_ids)
    return new_ids


def prepare(model, cfg: Any, log=print) -> list[int]:
    """The blocks to train with use_llama_pro: those of an earlier expansion, or new ones inserted now."""
    earlier = expanded_layers(model)
    if earlier:
        log(f"LLaMA Pro: model already expanded; training blocks {earlier}")
        return earlier
    n = int(cfg.freeze.trainable_layers)
    inner, attr = decoder_layers(model)
    before = len(getattr(inner, attr))
    ids = expand(model, n)
    log(f"LLaMA Pro: {before} -> {before + len(ids)} blocks; new identity blocks {ids} are trained")
    return ids
