"""Shared prompts: a preference pair's prompt runs once for both of its answers.

TRL's DPOTrainer scores a batch of B pairs as 2B rows, ``prompt + chosen`` then ``prompt + rejected``, so every
prompt token runs through the model twice (forward, recompute and backward), although both rows see the same
tokens at the same positions and so compute the same hidden states for it. In the bench's data the prompt is
about 60 % of each row. Here a pair becomes two examples of one padding-free row that share the prompt:

    packed row:  p0 p1 ... pP-1  c0 ... cC-1  pP-1' r0 ... rR-1
    positions:   0  1  ... P-1   P  ... P+C-1 P-1   P  ... P+R-1
    example A (chosen):    p0 ... pP-1 c0 ... cC-1              (causal attention, as in its own row)
    example B (rejected):  p0 ... pP-2 [pP-1' r0 ... rR-1]      (the prompt's keys and values taken from A)

The prompt's last token runs twice (``pP-1'``): the LM head predicts ``r0`` from its hidden state, and in a row
a token is always predicted from the token just before it. Variable-length SDPA (llmpipe.models.varlen_attention)
reads the examples from the layout attached to the position ids and attends each one causally, exactly as the
padded rows do; every other layer works per token. The per-token outputs go back to the padded [2B, L - 1]
places of the rows (zeros on the rejected row's prompt, whose labels are ignored), so TRL sees what it would
have computed. Same log-probs up to floating-point summation order (checked per model: :func:`sharing_gap`).

A pair shares when both rows start with the same prompt tokens (labels ignored) and each has an answer. It is
used for the fused-LM-head calls that padding-free preference training already hooks, only with variable-length
SDPA (FlashAttention's varlen kernels take sequence boundaries, not a tree), and not when the call asks for
MoE router logits (the auxiliary loss counts tokens: a shared prompt would count once).
"""
from __future__ import annotations

from typing import Any

from llmpipe.training.collators import IGNORE_INDEX


def _prompt_lengths(labels, lengths) -> list[int]:
    """Per row: the number of leading tokens whose label is ignored (the prompt), at most the row's length."""
    import torch

    answered = labels != IGNORE_INDEX
    first = torch.where(answered.any(dim=1), answered.float().argmax(dim=1), lengths)
    return [int(x) for x in torch.minimum(first, lengths)]


def shared_row(kwargs: dict[str, Any]):
    """The kwargs of one packed row in which each pair of the padded [2B, L] call shares its prompt, and the
    (rows, cols) padded place of each packed token (for the outputs' way back); None when no pair shares or the
    call is not a pair batch (odd rows, no labels, rows not flushed left)."""
    import torch

    ids, labels, mask = kwargs["input_ids"], kwargs.get("labels"), kwargs["attention_mask"].bool()
    n, width = ids.shape
    if labels is None or n % 2 or n == 0:
        return None
    lengths = mask.sum(dim=1)
    cols = torch.arange(width, device=ids.device)
    if not torch.equal(mask, cols.unsqueeze(0) < lengths.unsqueeze(1)):
        return None   # padding not all on the right: TRL flushes left; anything else runs unshared
    half = n // 2
    prompts = _prompt_lengths(labels, lengths)
    size = [int(x) for x in lengths]
    shares = [0 < prompts[i] == prompts[i + half] and prompts[i] < min(size[i], size[i + half])
              and torch.equal(ids[i, :prompts[i]], ids[i + half, :prompts[i]]) for i in range(half)]
    if not any(shares):
        return None

    rows, tok_cols, positions, examples = [], [], [], []   # examples: packed indices of each example
    def take(row: int, start: int) -> list[int]:
        first = len(rows)
        rows.extend([row] * (size[row] - start))
        tok_cols.extend(range(start, size[row]))
        positions.extend(range(start, size[row]))
        return list(range(first, len(rows)))

    slots: list[tuple[int, int]] = []   # (example, offset) that gives each packed token its output
    for i in range(half):
        chosen = take(i, 0)
        examples.append(chosen)
        slots.extend((len(examples) - 1, k) for k in range(len(chosen)))
        if shares[i]:
            p = prompts[i]
            own = take(i + half, p - 1)
            examples.append(chosen[:p - 1] + own)
            slots.extend((len(examples) - 1, p - 1 + k) for k in range(len(own)))
        else:
            own = take(i + half, 0)
            examples.append(own)
            slots.extend((len(examples) - 1, k) for k in range(len(own)))
    longest = max(len(e) for e in examples)
    filled = [e * longest + k for e, members in enumerate(examples) for k in range(len(members))]
    members = [m for e in examples for m in e]
    slot = [e * longest + k for e, k in slots]
    where = (torch.tensor(rows, device=ids.device), torch.tensor(tok_cols, device=ids.device))
    position_ids = torch.tensor([positions], device=ids.device)
    as_tensor = lambda x: torch.tensor(x, dtype=torch.long, device=ids.device)
    position_ids.llmpipe_layout = (as_tensor(filled), as_tensor(members), as_tensor(slot), len(examples), longest)
    out = dict(kwargs)
    out.pop("attention_mask")
    out["input_ids"] = ids[where].unsqueeze(0)
    out["position_ids"] = position_ids
    out["labels"] = labels[where].masked_fill(position_ids[0] == 0, IGNORE_INDEX).unsqueeze(0)
    return out, where


def usable(model, kwargs: dict[str, Any]) -> bool:
    """Whether this call may share prompts: variable-length SDPA in the model, no MoE router logits asked for."""
    from llmpipe.models.varlen_attention import NAME

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    attn = getattr(getattr(base, "config", None), "_attn_implementation", None)
    return attn == NAME and not kwargs.get("output_router_logits")


def sharing_gap(model, seed: int = 0) -> float:
    """Largest difference between the logits of two pairs run as a padding-free row without and with shared
    prompts (what the hooked calls would run otherwise, and what they run with sharing), relative to the logits'
    magnitude: 0 when sharing is exact for this model."""
    import torch

    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or model.get_input_embeddings().num_embeddings
    g = torch.Generator().manual_seed(seed)
    prompt_a, prompt_b = (torch.randint(0, vocab, (n,), generator=g) for n in (7, 4))
    answers = [torch.randint(0, vocab, (n,), generator=g) for n in (5, 3, 2, 6)]
    rows = [torch.cat([prompt_a, answers[0]]), torch.cat([prompt_b, answers[1]]),
            torch.cat([prompt_a, answers[2]]), torch.cat([prompt_b, answers[3]])]
    prompts = [7, 4, 7, 4]
    width = max(len(r) for r in rows)
    ids = torch.zeros((4, width), dtype=torch.long)
    mask = torch.zeros((4, width), dtype=torch.long)
    labels = torch.full((4, width), IGNORE_INDEX)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
        labels[i, prompts[i]:len(r)] = r[prompts[i]:]
    device = next(model.parameters()).device
    shared, (where_rows, where_cols) = shared_row({"input_ids": ids.to(device), "attention_mask": mask.to(device),
                                                   "labels": labels.to(device)})
    starts = torch.tensor([0] + [len(r) for r in rows]).cumsum(0)[:-1]
    plain_ids = torch.cat(rows).unsqueeze(0).to(device)
    plain_pos = torch.cat([torch.arange(len(r)) for r in rows]).unsqueeze(0).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            plain = model(input_ids=plain_ids, position_ids=plain_pos).logits.float()[0]
            one = model(input_ids=shared["input_ids"], position_ids=shared["position_ids"]).logits.float()[0]
    finally:
        model.train(was_training)
    plain = plain[starts.to(device)[where_rows] + where_cols]
    return ((plain - one).abs().max() / plain.abs().max().clamp_min(1e-6)).item()
