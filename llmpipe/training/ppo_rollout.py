"""PPO's experience: prompts rendered with the chat template, responses sampled from the policy, and the
per-token log-probabilities (policy, reference) and values of those responses.

Sequences are [left-padded prompt | right-padded response]; position ids follow the attention mask, so the
padded forward passes see exactly what generation saw.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Rollout:
    ids: torch.Tensor            # [B, P + R] prompt (left-padded) + response (right-padded)
    mask: torch.Tensor           # attention mask of ids
    start: int                   # P: where the responses start
    response_mask: torch.Tensor  # [B, R] 1 on response tokens up to and including the end token
    conversations: list          # prompt messages + the generated assistant turn, for the reward source


def encode_prompts(rows, tokenizer, max_len: int | None) -> list[tuple[list[int], list[dict]]]:
    """[(prompt token ids ending with the assistant header, prompt messages)] of the ``prompt`` rows."""
    out = []
    for msgs in rows:
        text = tokenizer.apply_chat_template(list(msgs), tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        if max_len and len(ids) > max_len:
            ids = ids[-max_len:]   # keep the end: the question and the assistant header
        out.append((ids, list(msgs)))
    return out


def generation_config(cfg: Any, tokenizer, greedy: bool = False):
    from transformers import GenerationConfig

    g = cfg.generate
    sample = g.do_sample and not greedy
    kw: dict[str, Any] = dict(max_new_tokens=g.max_new_tokens, do_sample=sample, num_beams=1,
                              repetition_penalty=g.repetition_penalty, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    if sample:
        kw.update(temperature=g.temperature, top_p=g.top_p, top_k=g.top_k)
    return GenerationConfig(**kw)


def _left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), n), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, n - len(p):], mask[i, n - len(p):] = torch.tensor(p), 1
    return ids.to(device), mask.to(device)


def response_mask(responses: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 up to and including the first end token of each response, 0 after it."""
    is_eos = responses == eos_id
    after = (is_eos.cumsum(-1) - is_eos.long()) > 0
    return (~after).long()


@torch.no_grad()
def generate(model, batch: list[tuple[list[int], list[dict]]], tokenizer, gen_config) -> Rollout:
    device = next(model.parameters()).device
    ids, mask = _left_pad([p for p, _ in batch], tokenizer.pad_token_id, device)
    was_training = model.training
    model.eval()
    try:
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_config)
    finally:
        model.train(was_training)
    start = ids.size(1)
    responses = out[:, start:]
    rmask = response_mask(responses, tokenizer.eos_token_id)
    if responses.size(1) == 0:   # nothing generated at all: one end token each
        responses = torch.full((len(batch), 1), tokenizer.eos_token_id, device=device)
        rmask = torch.ones_like(responses)
    responses = responses.masked_fill(rmask == 0, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    convs = [msgs + [{"role": "assistant", "content": t.strip()}] for (_, msgs), t in zip(batch, texts)]
    return Rollout(torch.cat([ids, responses], 1), torch.cat([mask, rmask], 1), start, rmask, convs)


def forward(model, value_head, ids: torch.Tensor, mask: torch.Tensor, start: int, temperature: float = 1.0):
    """(log-probabilities of the response tokens, values or None) for [prompt | response] sequences."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                output_hidden_states=value_head is not None)
    logits = out.logits[:, start - 1:-1].float() / temperature
    targets = ids[:, start:]
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
    values = None
    if value_head is not None:
        hidden = out.hidden_states[-1][:, start - 1:-1]
        values = value_head(hidden.to(value_head.weight.dtype)).squeeze(-1).float()
    return logprobs, values


def chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))
