"""The harness's arithmetic (pure python, unit-tested): medians, ratios, tokens/s, FLOPs per token, MFU,
targets, noise flags and loss-curve agreement.

FLOPs per token (``flops_per_token``) is the usual training estimate 6·N + 12·L·d_attn·T (PaLM, appendix B):
N = parameters of every matrix a token is multiplied by (attention and MLP projections of all layers plus
lm_head; the embedding lookup is not a matmul), L layers, d_attn = heads x head_dim, T = tokens in the
attention window of the sequence. LoRA training is counted like full training: the frozen weights still
carry the forward and input-gradient passes, and the 6·N convention is what MFU figures elsewhere use; the
adapter's own FLOPs (< 3 % here) are left out. DPO adds one reference forward (2·N + 4·L·d_attn·T) per
token. MFU = tokens/s x FLOPs per token / the matmul peak measured in the same run.
"""
from __future__ import annotations

import statistics
from typing import Iterable

NOISY_LOAD = 1.5


def median(values: Iterable) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b (None when either is missing or b is 0)."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def tokens_per_s(tokens_per_row: float, batch: int, steps: int, runtime_s: float | None) -> float | None:
    """Non-pad tokens per second: E[non-pad tokens per row] x batch x steps / train_runtime."""
    if not runtime_s:
        return None
    return tokens_per_row * batch * steps / runtime_s


def matmul_params(cfg: dict) -> int:
    """Parameters of the matrices a token passes through (attention + MLP of all layers, and lm_head)."""
    d, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or d // heads
    attn = d * heads * hd * 2 + d * kv * hd * 2          # q, o and k, v
    mlp = 3 * d * cfg["intermediate_size"]               # gate, up, down
    return L * (attn + mlp) + d * cfg["vocab_size"]


def flops_per_token(cfg: dict, seq_len: float, *, reference_forward: bool = False) -> float:
    """6·N + 12·L·d_attn·T; with ``reference_forward`` plus a frozen forward pass, 2·N + 4·L·d_attn·T."""
    L = cfg["num_hidden_layers"]
    heads = cfg["num_attention_heads"]
    d_attn = heads * (cfg.get("head_dim") or cfg["hidden_size"] // heads)
    n = matmul_params(cfg)
    f = 6 * n + 12 * L * d_attn * seq_len
    if reference_forward:
        f += 2 * n + 4 * L * d_attn * seq_len
    return float(f)


def mfu(tok_s: float | None, flops_tok: float, peak_flops: float | None) -> float | None:
    if tok_s is None or not peak_flops:
        return None
    return tok_s * flops_tok / peak_flops


def best_peak(peak: dict) -> float:
    """The matmul peak: the best FLOP/s of every measured shape (square ones and the model's own; on a shared
    CPU the large squares are the likeliest to be slowed down, so the model's shapes can be faster)."""
    return max([peak.get("peak_flops") or 0.0, *(peak.get("square") or {}).values(),
                *(peak.get("model_shapes") or {}).values()])


def noisy(record: dict, limit: float = NOISY_LOAD) -> bool:
    """A run is noisy when the 1-minute load average before it was above ``limit``."""
    return (record.get("load_before") or 0) > limit


def check(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}[op]


def loss_agreement(a: dict, b: dict) -> dict:
    """Largest relative difference of two loss curves ({step: loss}) at their common steps."""
    common = sorted(set(map(int, a)) & set(map(int, b)))
    if not common:
        return {"steps": [], "max_rel_diff": None}
    diffs = {s: abs(a[s] - b[s]) / max(abs(b[s]), 1e-12) for s in common}
    worst = max(diffs, key=diffs.get)
    return {"steps": common, "max_rel_diff": diffs[worst], "worst_step": worst,
            "a": [a[s] for s in common], "b": [b[s] for s in common]}


def fmt(value: float | None, unit: str = "") -> str:
    """Compact number for the table."""
    if value is None:
        return "—"
    if unit == "%":
        return f"{100 * value:.1f} %"
    if unit == "x":
        return f"{value:.2f}×"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
