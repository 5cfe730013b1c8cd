"""The built-in tiny model really learns the bundled demo_sft data in ~100 CPU steps.

A plain torch loop (AdamW) over the output of llmpipe's own data pipeline: if masking, templates or
the data were wrong, the held-out loss would not fall this far.
"""
from __future__ import annotations

import math
import time
import types

import pytest

pytestmark = pytest.mark.slow

STEPS, BATCH, LR = 100, 32, 3e-3


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("llmpipe_cache")


def _cfg():
    data = types.SimpleNamespace(dataset=["demo_sft"], eval_dataset=["demo_sft_eval"], dataset_dir="data", template=None,
                                 cutoff_len=128, train_on_prompt=False, mask_history=False, max_samples=None,
                                 val_size=0.0, default_system=None, packing=None, mix_strategy="concat",
                                 interleave_probs=None, preprocessing_batch_size=1000)
    return types.SimpleNamespace(data=data, train=types.SimpleNamespace(seed=0, stage="sft"))


def _batches(ds, pad_id, size, torch):
    for i in range(0, len(ds), size):
        rows = ds[i:i + size]
        n = max(map(len, rows["input_ids"]))
        ids = torch.full((len(rows["input_ids"]), n), pad_id)
        labels = torch.full_like(ids, -100)
        mask = torch.zeros_like(ids)
        for j, (x, y) in enumerate(zip(rows["input_ids"], rows["labels"])):
            ids[j, :len(x)], labels[j, :len(y)], mask[j, :len(x)] = torch.tensor(x), torch.tensor(y), 1
        yield ids, mask, labels


def _eval_loss(model, ds, pad_id, torch):
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, mask, labels in _batches(ds, pad_id, 50, torch):
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            tgt = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            total, count = total + loss.item(), count + (tgt != -100).sum().item()
    model.train()
    return total / count


def test_tiny_model_learns_demo_sft(cache):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmpipe.data.loader import build_datasets
    from llmpipe.models.tiny import ensure_builtin

    path = ensure_builtin("builtin:tiny", cache)
    tok = AutoTokenizer.from_pretrained(path)
    bundle = build_datasets(_cfg(), tok)
    assert (len(bundle.train), len(bundle.eval)) == (600, 100)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path)
    before = _eval_loss(model, bundle.eval, tok.pad_token_id, torch)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.1, 1 - s / STEPS))
    train = bundle.train.shuffle(seed=0)
    t0, step = time.time(), 0
    while step < STEPS:
        for ids, mask, labels in _batches(train.shuffle(seed=step), tok.pad_token_id, BATCH, torch):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad()
            step += 1
            if step == STEPS:
                break
    after = _eval_loss(model, bundle.eval, tok.pad_token_id, torch)
    print(f"\nheld-out loss {before:.3f} -> {after:.3f} (ppl {math.exp(before):.0f} -> {math.exp(after):.2f}) "
          f"in {STEPS} steps, {time.time() - t0:.1f}s")
    assert after < 0.6 * before
    assert after < 2.0
