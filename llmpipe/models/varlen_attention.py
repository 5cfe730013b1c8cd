"""Variable-length SDPA (``llmpipe_varlen_sdpa``): attention for padding-free rows without FlashAttention.

A padding-free row holds the examples of a batch one after the other, each with position ids from 0. Plain
SDPA with the block-diagonal mask transformers derives from those positions computes attention over the
whole row: quadratic in the row's length, five times the padded batch's attention cost for eight examples
(measured: a DPO step became 15 % slower although it had 21 % fewer tokens). FlashAttention's varlen kernels
avoid that on NVIDIA GPUs; this function does it with any SDPA backend: the row's queries, keys and values
are scattered into a right-padded [examples, heads, longest, dim] block, attended with ``is_causal=True``
(a real query never reaches a pad key, which all come after it) and gathered back. Everything else in the
layer (projections, MLP, norms, RoPE, the LM head) runs on the real tokens only.

It applies to exactly the calls transformers itself reads as packed: position ids given, no attention mask,
no KV cache (padding-free rows, and neat packing's rows too). A forward pre-hook marks those calls' position
ids; every other call (padded batches with an attention mask, generation with a KV cache) goes to
transformers' own SDPA unchanged, so a model can keep this implementation for evaluation and generation.
``use_varlen_sdpa(model)`` switches a model from ``sdpa`` to it and reports whether it did. Position ids that carry
an explicit layout (``llmpipe_layout``: the packed tokens of each example, where examples may share tokens, as
a preference pair's answers share their prompt: llmpipe.training.shared_prompts) are attended example by example
the same way.
"""
from __future__ import annotations

NAME = "llmpipe_varlen_sdpa"


def _segments(position_ids):
    """(example index, offset in the example) of every token of the flattened rows, examples count, longest.
    An example starts at each row start and wherever the position does not continue by one: the rule
    transformers uses to find packed sequences (``masking_utils.find_packed_sequence_indices``)."""
    import torch

    pos = position_ids.reshape(-1)
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[1:] = pos[1:] - pos[:-1] != 1
    starts[:: position_ids.shape[-1]] = True
    example = starts.long().cumsum(0) - 1
    n = int(example[-1].item()) + 1
    index = torch.arange(pos.numel(), device=pos.device)
    first = index[starts]
    offset = index - first[example]
    return example, offset, n, int(offset.max().item()) + 1


def _mark_packed_calls(module, args, kwargs):
    """Forward pre-hook of the model: a call with position ids and neither an attention mask nor a KV cache is
    one whose rows transformers reads as packed examples; its position ids carry that to the attention
    (also in a gradient-checkpointing recompute, which reuses the same tensor)."""
    position_ids = kwargs.get("position_ids")
    if position_ids is not None and kwargs.get("attention_mask") is None and kwargs.get("past_key_values") is None:
        position_ids.llmpipe_packed = True


def varlen_sdpa_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                        **kwargs):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    plain = getattr(module, "sliding_window", None) is None and kwargs.get("s_aux") is None   # no window/sinks
    if not plain or not getattr(position_ids, "llmpipe_packed", False) or key.shape[2] != query.shape[2] \
            or position_ids.shape[-1] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    layout = getattr(position_ids, "llmpipe_layout", None)
    if layout is not None and query.shape[0] == 1:   # examples that share tokens (training.shared_prompts)
        filled, members, slot, n, longest = layout   # example slots in use, their packed tokens, each token's slot

        def spread(x):   # [1, heads, T, dim] -> [examples, heads, longest, dim]: a shared token in each example
            tokens = x[0].transpose(0, 1)                                   # [T, heads, dim]
            out = tokens.new_zeros((n * longest,) + tuple(tokens.shape[1:]))
            return out.index_put((filled,), tokens[members]).reshape(n, longest, *tokens.shape[1:]).transpose(1, 2)
    else:
        example, offset, n, longest = _segments(position_ids.expand(query.shape[0], -1))
        slot = None

        def spread(x):   # [rows, heads, T, dim] -> [examples, heads, longest, dim], zeros after each example
            tokens = x.transpose(1, 2).reshape(-1, x.shape[1], x.shape[3])    # [rows * T, heads, dim]
            out = tokens.new_zeros((n, longest) + tuple(tokens.shape[1:]))
            return out.index_put((example, offset), tokens).transpose(1, 2)

    q, k, v = spread(query), spread(key), spread(value)
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, dropout_p=dropout if module.training else 0.0, scale=scaling, is_causal=True,
        enable_gqa=q.shape[1] != k.shape[1])
    out = out.transpose(1, 2)                                            # [examples, longest, heads, dim]
    out = out[example, offset] if slot is None else out.reshape(n * longest, *out.shape[2:])[slot]   # [rows*T, ...]
    return out.reshape(query.shape[0], query.shape[2], query.shape[1], query.shape[3]).contiguous(), None


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    if NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(NAME, varlen_sdpa_forward)
    if NAME not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(NAME, sdpa_mask)   # padded calls get SDPA's masks


def use_varlen_sdpa(model) -> bool:
    """Switch ``model`` (or the model inside a PEFT wrapper) from SDPA to variable-length SDPA; False when it
    does not use SDPA (FlashAttention keeps its own varlen kernels, eager/flex stay as they are)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(base, "set_attn_implementation"):
        return False
    register()
    base.set_attn_implementation(NAME)
    if not getattr(base, "llmpipe_marks_packed_calls", False):
        base.register_forward_pre_hook(_mark_packed_calls, with_kwargs=True)
        base.llmpipe_marks_packed_calls = True
    return True
