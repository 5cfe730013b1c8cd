"""S²-Attn (shift short attention, LongLoRA) as an attention function of transformers' attention interface.

While training, the sequence is cut into groups of a quarter of its length and every token attends causally
inside its own group only; the second half of the heads uses groups shifted by half a group, so information
still flows between neighbouring groups. Unlike LongLoRA's reference code, which rolls the shifted heads
around the sequence end (so that the first tokens see the last ones), the shifted groups here are padded at
the front: no token ever sees a later token. In eval mode (evaluation, generation) the model uses ordinary
full attention (SDPA), as LongLoRA does at inference.

Works for every model whose attention layers call ``ALL_ATTENTION_FUNCTIONS`` after applying RoPE (Llama,
Qwen2, Mistral, Gemma, ... in transformers 5); :func:`enable` refuses other models.
"""
from __future__ import annotations

import math
from typing import Any

from llmpipe.errors import UserError

NAME = "llmpipe_s2"
GROUP_RATIO = 0.25   # group size = a quarter of the sequence (LongLoRA's setting)


class ShiftAttnError(UserError):
    """shift_attn was asked for a model it cannot be applied to."""


def group_attention(q, k, v, valid, group: int, offset: int, scaling: float, dropout: float = 0.0):
    """Causal attention inside groups of ``group`` tokens, the groups starting ``offset`` tokens early
    (``offset`` pad tokens in front). q, k, v: (b, h, L, d); valid: (b, L) bool, keys that may be attended."""
    import torch
    import torch.nn.functional as F

    b, h, length, d = q.shape
    total = math.ceil((length + offset) / group) * group
    front, back = offset, total - length - offset
    n = total // group

    def grouped(t):
        t = F.pad(t, (0, 0, front, back))
        return t.view(b, h, n, group, d).transpose(1, 2).reshape(b * n, h, group, d)

    keys_ok = F.pad(valid, (front, back), value=False).view(b * n, 1, 1, group)
    causal = torch.ones(group, group, dtype=torch.bool, device=q.device).tril()
    # a token may always see itself: rows of padding positions are never empty (no NaN), real rows unchanged
    mask = (causal & keys_ok) | torch.eye(group, dtype=torch.bool, device=q.device)
    out = F.scaled_dot_product_attention(grouped(q), grouped(k), grouped(v), attn_mask=mask, dropout_p=dropout,
                                         scale=scaling)
    out = out.view(b, n, h, group, d).transpose(1, 2).reshape(b, h, total, d)
    return out[:, :, front:front + length]


def _key_validity(mask, b: int, length: int, device):
    import torch

    if mask is None:
        return torch.ones(b, length, dtype=torch.bool, device=device)
    last = mask[:, 0, -1, :length]   # the last query row sees every earlier key that is not padding
    return last if last.dtype == torch.bool else last == 0


def s2_attention(module, query, key, value, attention_mask, scaling: float | None = None, dropout: float = 0.0,
                 **kwargs: Any):
    """transformers attention function: S²-Attn while training, SDPA otherwise. Returns (b, L, h, d), None."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    b, heads, length, d = query.shape
    if not module.training or length < 4 or heads < 2 or key.shape[2] != length:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    if key.shape[1] != heads:   # grouped-query attention: one copy of each kv head per query head
        rep = heads // key.shape[1]
        key, value = key.repeat_interleave(rep, dim=1), value.repeat_interleave(rep, dim=1)
    scale = scaling if scaling is not None else d ** -0.5
    group = max(2, math.ceil(length * GROUP_RATIO))
    valid = _key_validity(attention_mask, b, length, query.device)
    half = heads // 2
    import torch

    plain = group_attention(query[:, :half], key[:, :half], value[:, :half], valid, group, 0, scale, dropout)
    shifted = group_attention(query[:, half:], key[:, half:], value[:, half:], valid, group, group // 2, scale,
                              dropout)
    return torch.cat([plain, shifted], dim=1).transpose(1, 2).contiguous(), None


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, s2_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def enable(model) -> None:
    """Switch ``model`` (a PreTrainedModel) to S²-Attn."""
    if not getattr(model, "_supports_attention_backend", False):
        raise ShiftAttnError(f"model.shift_attn: {type(model).__name__} does not use transformers' attention "
                             "interface, so S²-Attn cannot be applied to it (Llama, Qwen2, Mistral, Gemma work)")
    register()
    model.set_attn_implementation(NAME)

