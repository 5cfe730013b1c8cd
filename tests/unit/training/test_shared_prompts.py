"""Shared prompts (llmpipe.training.shared_prompts): a preference pair's prompt runs once for both answers in
the padding-free row, and TRL's fused-LM-head call gets the same log-probs, loss and gradients as the padded
call that runs the prompt twice."""
from __future__ import annotations

import pytest
import torch
from methods_support import micro_model

from llmpipe.models.varlen_attention import use_varlen_sdpa
from llmpipe.training.collators import IGNORE_INDEX
from llmpipe.training.padding_free import decide_shared as decide
from llmpipe.training.padding_free import unpad_model_calls
from llmpipe.training.shared_prompts import shared_row, sharing_gap

# (prompt, chosen, rejected) lengths of three pairs; the last pair's prompts differ (not shared)
PAIRS = ((5, 4, 6), (3, 7, 2), (4, 3, 3))


def _pair_call(seed: int = 5):
    """A padded [2B, L] DPO call as TRL builds it: chosen rows, then rejected rows, flushed left."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(2, 96, (n,), generator=g)
    rows, prompts = [], []
    chosen, rejected = [], []
    for i, (p, c, r) in enumerate(PAIRS):
        prompt = rand(p)
        other = rand(p) if i == len(PAIRS) - 1 else prompt
        chosen.append(torch.cat([prompt, rand(c)]))
        rejected.append(torch.cat([other, rand(r)]))
        prompts.append(p)
    rows, prompts = chosen + rejected, prompts * 2
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE_INDEX)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
        labels[i, prompts[i]:len(r)] = r[prompts[i]:]
    return dict(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, use_cache=False)


def test_the_row_holds_each_shared_prompt_once_and_the_last_prompt_token_twice():
    call = _pair_call()
    new, (rows, cols) = shared_row(call)
    real = int(call["attention_mask"].sum())
    shared = [p - 1 for p, _, _ in PAIRS[:-1]]   # the first two pairs share all but the prompt's last token
    assert new["input_ids"].shape == (1, real - sum(shared))
    assert "attention_mask" not in new
    # pair 0: chosen row 0 (positions 0..8), then the rejected row 3 from its last prompt token (position 4)
    pos = new["position_ids"][0].tolist()
    assert pos[:9] == list(range(9)) and pos[9:16] == [4, 5, 6, 7, 8, 9, 10]
    assert rows[:16].tolist() == [0] * 9 + [3] * 7 and cols[9:16].tolist() == list(range(4, 11))
    # every packed token keeps its label; the repeated prompt token is not scored (it is a prompt token)
    assert torch.equal(new["labels"][0], call["labels"][rows, cols].masked_fill(new["position_ids"][0] == 0,
                                                                               IGNORE_INDEX))
    # pair 2 does not share: its rejected row runs whole, from position 0
    assert new["position_ids"][0].tolist()[-7:] == list(range(7))


def test_calls_that_are_not_pairs_of_shared_prompts_are_left_alone():
    call = _pair_call()
    assert shared_row({**call, "labels": None}) is None
    odd = {k: v[:5] if torch.is_tensor(v) else v for k, v in call.items()}
    assert shared_row(odd) is None
    right = {**call, "attention_mask": call["attention_mask"].flip(1)}   # padding on the left
    assert shared_row(right) is None
    swapped = dict(call)
    half = len(PAIRS)
    swapped["input_ids"] = torch.cat([call["input_ids"][:half], call["input_ids"][half:].roll(1, dims=0)])
    swapped["labels"] = torch.cat([call["labels"][:half], call["labels"][half:].roll(1, dims=0)])
    swapped["attention_mask"] = torch.cat([call["attention_mask"][:half], call["attention_mask"][half:].roll(1, 0)])
    assert shared_row(swapped) is None   # no chosen row meets its own rejected row's prompt


@pytest.mark.parametrize("labelled_only", [False, True], ids=["trl-head", "label-only-head"])
def test_shared_prompt_calls_give_the_padded_log_probs_loss_and_gradients(labelled_only, monkeypatch):
    from trl.trainer.utils import add_fused_lm_head

    if labelled_only:
        from llmpipe.training.lm_head import score_label_positions_only

        score_label_positions_only()
    call = _pair_call()
    model = micro_model(tie_word_embeddings=False)
    add_fused_lm_head(model, outputs=("log_probs",))
    ref = model(**call)
    ref.log_probs.sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    assert use_varlen_sdpa(model)
    unpad_model_calls(model, share_prompts=True)
    seen = []
    import llmpipe.training.shared_prompts as sp

    real = sp.shared_row
    monkeypatch.setattr(sp, "shared_row", lambda kw: seen.append(1) or real(kw))
    out = model(**call)
    out.log_probs.sum().backward()
    assert seen   # the call ran with shared prompts
    scored = call["labels"][:, 1:] != IGNORE_INDEX
    assert torch.allclose(out.log_probs[scored], ref.log_probs[scored], atol=1e-5)
    assert torch.allclose(out.loss, ref.loss, atol=1e-6)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, ref_grads[name], rtol=1e-4, atol=1e-6), name


def test_the_check_finds_sharing_exact_on_varlen_sdpa_and_refuses_other_attention():
    model = micro_model()
    notes = []
    assert decide(model, notes.append) is False and notes == []   # sdpa, not the variable-length kernel
    assert use_varlen_sdpa(model)
    assert sharing_gap(model) < 1e-6
    assert decide(model, notes.append) is True and "shared prompts" in notes[-1]
    eager = micro_model(attn_implementation="eager")
    assert decide(eager, notes.append) is False
