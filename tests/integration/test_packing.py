"""Packing isolation, measured on a real model: the loss of every example packed with neat packing equals
its loss alone (the model cannot see the other examples of its sequence), while plain packing changes
the loss of every example that has a neighbour before it. sdpa and eager attention, train and eval mode,
through llmpipe's data pipeline and collators; then through the Trainer's evaluation."""
from __future__ import annotations

import os
import types

import pytest

torch = pytest.importorskip("torch")

from llmpipe.data.loader import build_datasets  # noqa: E402
from llmpipe.training.collators import (NeatPackingCollator, PackingIsolationError, collator_for,  # noqa: E402
                                        isolation_gap, packing_callbacks)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from llmpipe.models.tiny import ensure_builtin

    cache = os.environ.get("LLMPIPE_BUILTIN_CACHE") or tmp_path_factory.mktemp("builtin")
    return ensure_builtin("builtin:tiny-random", cache)  # random weights: attention is not trained to be local


@pytest.fixture(scope="module")
def tok(model_dir):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(model_dir)


def cfg(**data):
    d = dict(dataset=["demo_sft_sharegpt"], max_samples=24, cutoff_len=256, preprocessing_batch_size=1000,
             ignore_pad_token_for_loss=True, **data)
    return types.SimpleNamespace(data=types.SimpleNamespace(**d), train=types.SimpleNamespace(seed=0, stage="sft"))


@pytest.fixture(scope="module")
def data(tok):
    alone = build_datasets(cfg(), tok).train
    neat = build_datasets(cfg(neat_packing=True), tok).train
    plain = build_datasets(cfg(packing=True), tok).train
    assert neat["input_ids"] == plain["input_ids"] and len(neat) < len(alone) // 2
    return alone, neat, plain


def load_model(model_dir, attn):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn, dtype=torch.float32)


def token_losses(model, batch):
    """Per-token loss at every label position (nan where the label is ignored), shape = labels."""
    batch = dict(batch)
    labels = batch.pop("labels")
    logits = model(**batch).logits[:, :-1].float()
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], reduction="none",
                                             ignore_index=-100)
    out = torch.full(labels.shape, float("nan"))
    out[:, 1:] = torch.where(labels[:, 1:] == -100, torch.nan, loss)
    return out


def example_losses(rows, losses, bounds):
    """{token tuple of an example: its mean loss}; ``bounds(row)`` gives the example boundaries in a row."""
    out = {}
    for r, row in enumerate(rows):
        cut = bounds(row) + [len(row["input_ids"])]
        for a, b in zip(cut, cut[1:]):
            out[tuple(row["input_ids"][a:b])] = losses[r, a:b].nanmean().item()
    return out


def restarts(row):
    return [i for i, p in enumerate(row["position_ids"]) if p == 0]


def seq2seq(tok):
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, padding=True)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_neat_packing_isolates_and_plain_packing_does_not(model_dir, tok, data, attn, mode):
    alone, neat, plain = data
    model = load_model(model_dir, attn)
    getattr(model, mode)()  # train mode: where a default KV cache used to undo the isolation
    with torch.no_grad():
        base = example_losses(alone, token_losses(model, seq2seq(tok)(list(alone))), lambda r: [0])
        neat_l = example_losses(neat, token_losses(model, NeatPackingCollator(tok.pad_token_id)(list(neat))), restarts)
        rows = [{k: r[k] for k in ("input_ids", "labels", "attention_mask")} for r in plain]
        plain_l = example_losses(neat, token_losses(model, seq2seq(tok)(rows)), restarts)  # same bins as neat
    assert neat_l.keys() == base.keys() and len(base) > 10
    worst = max(abs(neat_l[k] - base[k]) for k in base)
    assert worst < 1e-4, f"neat packing changed an example's loss by {worst}"
    firsts = {tuple(r["input_ids"][:restarts(r)[1]]) if len(restarts(r)) > 1 else tuple(r["input_ids"])
              for r in neat}
    later = [k for k in base if k not in firsts]
    assert later and all(abs(plain_l[k] - base[k]) > 1e-3 for k in later), "plain packing should see neighbours"
    assert all(abs(plain_l[k] - base[k]) < 1e-4 for k in firsts if k in base)


def test_trainer_eval_loss_is_the_same_packed_neatly(model_dir, tok, data, tmp_path):
    from transformers import Trainer, TrainingArguments

    alone, neat, plain = data
    model = load_model(model_dir, "sdpa")
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=64, report_to=[],
                             use_cpu=True, disable_tqdm=True)
    obj = types.SimpleNamespace(data=types.SimpleNamespace(ignore_pad_token_for_loss=True))
    losses = {}
    for name, ds in (("alone", alone), ("neat", neat), ("plain", plain)):
        collator = collator_for(obj, tok, ds)
        assert isinstance(collator, NeatPackingCollator) == (name == "neat")
        losses[name] = Trainer(model=model, args=args, data_collator=collator).evaluate(ds)["eval_loss"]
    assert losses["neat"] == pytest.approx(losses["alone"], rel=1e-5)
    assert abs(losses["plain"] - losses["alone"]) > 1e-3


def test_isolation_check_catches_a_leak(model_dir, tok):
    model = load_model(model_dir, "sdpa")
    good = NeatPackingCollator(tok.pad_token_id)
    assert isolation_gap(model, good) < 1e-6

    class Leaky(NeatPackingCollator):  # what the collator would do without use_cache=False on transformers 5.23
        def __call__(self, features):
            batch = super().__call__(features)
            batch.pop("use_cache")
            return batch

    leaky = Leaky(tok.pad_token_id)
    assert isolation_gap(model, leaky) > 1e-2
    (check,) = packing_callbacks(leaky)
    with pytest.raises(PackingIsolationError, match="lets packed examples attend to each other"):
        check.on_train_begin(None, None, None, model=model)
    packing_callbacks(good)[0].on_train_begin(None, None, None, model=model)  # passes


def test_collator_padding_and_ignore_pad_token_for_loss(tok, data):
    _, neat, _ = data
    rows = [neat[0], {k: v[:5] for k, v in neat[1].items()}]
    batch = NeatPackingCollator(tok.pad_token_id)(rows)
    n = len(rows[0]["input_ids"])
    assert batch["input_ids"].shape == (2, n) and batch["use_cache"] is False and "attention_mask" not in batch
    assert batch["position_ids"][1].tolist()[5:] == list(range(n - 5))  # padding is a segment of its own
    assert (batch["labels"][1, 5:] == -100).all()
    keep = types.SimpleNamespace(data=types.SimpleNamespace(ignore_pad_token_for_loss=False))
    batch = collator_for(keep, tok, neat)(rows)
    assert (batch["labels"][1, 5:] == tok.pad_token_id).all()
