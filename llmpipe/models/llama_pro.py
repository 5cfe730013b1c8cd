"""LLaMA Pro block expansion (freeze.use_llama_pro): insert copies of decoder blocks whose output projections
are zero, so each new block is the identity at first and the expanded model computes exactly what the base
did; only the new blocks are then trained. Which weights are the output projections is found on the model
(``residual_writers``), not read from a table of names, so every layout works, mixture-of-experts blocks too.

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


class LlamaProError(UserError):
    """The model cannot be block-expanded as configured."""


def expanded_layers(model) -> list[int] | None:
    """Indices of the blocks added by an earlier expansion (recorded in the config), or None."""
    value = getattr(model.config, MARKER, None)
    return list(value) if value else None


def _set_blocks(model, inner, attr: str, blocks: list, types: list | None) -> None:
    """Make ``blocks`` the model's decoder blocks: the ModuleList, each block's layer index (the KV cache is
    indexed by layer), config.num_hidden_layers (forward passes slice the blocks by it) and config.layer_types."""
    import torch

    for idx, block in enumerate(blocks):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = idx
    setattr(inner, attr, torch.nn.ModuleList(blocks))
    model.config.num_hidden_layers = len(blocks)
    if types is not None:
        model.config.layer_types = list(types)


def _probe_logits(model, probe):
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(input_ids=probe, use_cache=False).logits.float()
    finally:
        model.train(was_training)


def _zero(block, name: str, saved: dict | None = None) -> None:
    """Zero weight ``name`` of ``block`` and its bias (``x.bias`` of ``x.weight``; ``x_bias`` of a fused expert
    weight ``x``), keeping the old values in ``saved``."""
    import torch

    owner, _, leaf = name.rpartition(".")
    bias = f"{owner}.bias" if leaf == "weight" else f"{name}_bias"
    params = dict(block.named_parameters())
    with torch.no_grad():
        for n in (name, bias if bias.lstrip(".") in params else None):
            if n is None:
                continue
            p = params[n.lstrip(".")]
            if saved is not None:
                saved[n.lstrip(".")] = p.detach().clone()
            p.zero_()


def _through(model, block, probe) -> float:
    """How far ``block`` moves the hidden states of ``probe`` (the norm of its output minus its input)."""
    seen = {}

    def hook(module, args, kwargs, out):
        hidden = args[0] if args else kwargs["hidden_states"]
        out = out[0] if isinstance(out, tuple) else out
        seen["d"] = (out.float() - hidden.float()).norm().item()

    handle = block.register_forward_hook(hook, with_kwargs=True)
    try:
        _probe_logits(model, probe)
    finally:
        handle.remove()
    return seen["d"]


def _call_order(model, block, probe) -> list[str]:
    """The weights (dim >= 2) of ``block``, the last one its forward pass uses first: the modules that own
    weights in the reverse order of their first call, each module's weights in reverse registration order."""
    calls: list[str] = []
    owners = {m: n for n, m in block.named_modules() if any(p.dim() >= 2 for p in m.parameters(recurse=False))}
    handles = [m.register_forward_pre_hook(lambda mod, args: calls.append(owners[mod]) if owners[mod] not in calls
                                           else None) for m in owners]
    try:
        _probe_logits(model, probe)
    finally:
        for h in handles:
            h.remove()
    calls += [n for n in owners.values() if n not in calls]   # weights used without a module call come last
    named = {n: m for m, n in owners.items()}
    return [f"{owner}.{p}" if owner else p for owner in reversed(calls)
            for p, w in reversed(list(named[owner].named_parameters(recurse=False))) if w.dim() >= 2]


def residual_writers(model, index: int, probe) -> list[str]:
    """The weights (names within a block) that write decoder block ``index``'s output into the residual stream,
    found on the model itself rather than from a table of names: a copy of the block is inserted after it and,
    from the last weight to the first, each weight is zeroed and kept zeroed when that brings the copy closer to
    the identity, until it is the identity; then each kept weight that the identity does not need is restored.
    This finds the attention and MLP output projections of every layout (o_proj, down_proj, the routed and the
    shared experts' down projections of a mixture-of-experts block, ...)."""
    inner, attr = decoder_layers(model)
    blocks = list(getattr(inner, attr))
    types = list(model.config.layer_types) if getattr(model.config, "layer_types", None) else None
    clone = copy.deepcopy(blocks[index])
    kept: dict[str, dict] = {}
    _set_blocks(model, inner, attr, blocks[:index + 1] + [clone] + blocks[index + 1:],
                types[:index + 1] + [types[index]] + types[index + 1:] if types else None)

    def restore(saved: dict) -> None:
        params = dict(clone.named_parameters())
        for n, value in saved.items():
            params[n].data.copy_(value)

    try:
        order = _call_order(model, clone, probe)
        start = dist = _through(model, clone, probe)
        tol = 1e-6 * max(1.0, start)
        progress = True
        while dist > tol and progress:   # a small contribution (an MLP's, at random init) may need a second pass
            progress = False
            for name in order:
                if dist <= tol:
                    break
                if name in kept:
                    continue
                saved: dict = {}
                _zero(clone, name, saved)
                now = _through(model, clone, probe)
                if now < 0.99 * dist:
                    kept[name], dist, progress = saved, now, True
                else:
                    restore(saved)
        if dist <= tol:
            for name in list(kept):   # drop the weights the identity does not need (e.g. a router)
                zeroed = {n: dict(clone.named_parameters())[n].detach().clone() for n in kept[name]}
                restore(kept[name])
                if _through(model, clone, probe) <= tol:
                    del kept[name]
                else:
                    restore(zeroed)
    finally:
        _set_blocks(model, inner, attr, blocks, types)
    if dist > tol:
        raise LlamaProError(f"freeze.use_llama_pro: no set of weights of {type(clone).__name__} makes a copy of it "
                            f"the identity (found {', '.join(kept) or 'none'}; it still moves the hidden states by "
                            f"{dist:.3g})")
    return sorted(kept)


def expand(model, new_blocks: int) -> list[int]:
    """Insert ``new_blocks`` identity blocks; returns the indices of the new blocks in the expanded model."""
    import torch

    inner, attr = decoder_layers(model)
    layers = list(getattr(inner, attr))
    total = len(layers)
    if new_blocks < 1 or total % new_blocks:
        raise LlamaProError(f"freeze.use_llama_pro: the model has {total} blocks, which cannot be split into "
                            f"{new_blocks} equal groups; freeze.trainable_layers (the number of new blocks) must "
                            f"divide {total}")
    stride = total // new_blocks
    device = next(model.parameters()).device
    probe = (torch.arange(1, 17, device=device) * 7 % model.config.get_text_config().vocab_size)[None]
    base = _probe_logits(model, probe)
    writers: dict[tuple, list[str]] = {}   # blocks of one layout share their writers
    types = list(model.config.layer_types) if getattr(model.config, "layer_types", None) else None
    blocks, new_types, new_ids = [], [], []
    for i, block in enumerate(layers):
        blocks.append(block)
        new_types.append(types[i] if types else None)
        if (i + 1) % stride == 0:
            layout = tuple((n, tuple(p.shape)) for n, p in block.named_parameters())
            if layout not in writers:
                writers[layout] = residual_writers(model, i, probe)
            clone = copy.deepcopy(block)
            for name in writers[layout]:
                _zero(clone, name)
            new_ids.append(len(blocks))
            blocks.append(clone)
            new_types.append(types[i] if types else None)
    _set_blocks(model, inner, attr, blocks, new_types if types else None)
    setattr(model.config, MARKER, new_ids)
    diff = (_probe_logits(model, probe) - base).abs().max().item()
    if diff > 1e-4 * max(1.0, base.abs().max().item()):
        raise LlamaProError(f"freeze.use_llama_pro: the expanded {type(model).__name__} does not compute what the "
                            f"base did (logits differ by {diff:.3g}); its blocks cannot be expanded")
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
