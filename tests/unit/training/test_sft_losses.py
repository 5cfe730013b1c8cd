"""The SFT token losses of llmpipe.training.sft_losses (train.use_dft_loss / use_asft_loss / use_eaft_loss): each
one's value follows its formula on a tiny batch, the label-only head steps aside, and a short Trainer run with each
loss lowers the model's plain cross-entropy on its data."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from methods_support import X, cfg_of, micro_model

# one row, 4 positions, vocabulary of 3; positions 0 and 2 predict labelled tokens (labels shift by one)
LOGITS = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 3.0], [0.0, 0.0, 0.0]]])
LABELS = torch.tensor([[-100, 0, -100, 1]])


def by_hand(weight) -> float:
    """Sum over the two label tokens of weight(p) x -log p(label), divided by 2."""
    total = 0.0
    for pos, label in ((0, 0), (2, 1)):
        p = torch.softmax(LOGITS[0, pos], -1)
        total += weight(p, label) * -math.log(p[label])
    return total / 2


def test_dft_weights_each_token_by_its_probability():
    from llmpipe.training.sft_losses import sft_loss

    dft = sft_loss("dft", LOGITS, LABELS)
    assert dft.item() == pytest.approx(by_hand(lambda p, y: float(p[y])), rel=1e-6)
    ce = torch.nn.functional.cross_entropy(LOGITS[0, [0, 2]], torch.tensor([0, 1]))
    assert dft.item() < ce.item()                                         # every weight is a probability < 1
    assert sft_loss("dft", LOGITS, LABELS, num_items=4).item() == pytest.approx(dft.item() / 2)   # Trainer's count


def test_dft_weight_is_detached():
    from llmpipe.training.sft_losses import sft_loss

    logits = LOGITS.clone().requires_grad_(True)
    sft_loss("dft", logits, LABELS).backward()
    p = torch.softmax(LOGITS[0, 0], -1)
    onehot = torch.tensor([1.0, 0.0, 0.0])
    # gradient of p0 * CE with p0 a constant: p0 * (softmax - onehot) / 2 tokens
    assert torch.allclose(logits.grad[0, 0], p[0] * (p - onehot) / 2, atol=1e-6)


def test_eaft_weights_by_the_top_k_entropy_to_the_power_alpha():
    from llmpipe.training.sft_losses import sft_loss

    def weight(alpha):
        return lambda p, y: float((-(p * p.log()).sum() / 3.0) ** alpha)

    for alpha in (1.0, 2.0):
        got = sft_loss("eaft", LOGITS, LABELS, alpha=alpha).item()
        assert got == pytest.approx(by_hand(weight(alpha)), rel=1e-6)   # vocab 3 < 20: the whole distribution
    wide = torch.randn(1, 3, 50, generator=torch.Generator().manual_seed(0))
    top = torch.topk(wide[0, 0], 20).values.softmax(-1)
    expected = float(-(top * top.log()).sum() / 3.0) * float(-torch.log_softmax(wide[0, 0], -1)[7])
    assert sft_loss("eaft", wide, torch.tensor([[-100, 7, -100]])).item() == pytest.approx(expected, rel=1e-5)


def test_asft_adds_alpha_times_kl_from_the_reference():
    from llmpipe.training.sft_losses import sft_loss

    ref = torch.tensor([[[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])
    kl = 0.0
    for pos in (0, 2):
        q, p = torch.softmax(ref[0, pos], -1), torch.softmax(LOGITS[0, pos], -1)
        kl += float((q * (q.log() - p.log())).sum())
    dft = sft_loss("dft", LOGITS, LABELS).item()
    got = sft_loss("asft", LOGITS, LABELS, alpha=0.5, ref_logits=ref).item()
    assert got == pytest.approx(dft + 0.5 * kl / 2, rel=1e-6)
    assert sft_loss("asft", LOGITS, LABELS, alpha=0.5, ref_logits=LOGITS).item() == pytest.approx(dft, abs=1e-6)


def test_configured_loss_and_the_label_only_head():
    from llmpipe.training.lm_head import blocked_by
    from llmpipe.training.sft_losses import configured_loss

    assert configured_loss(cfg_of()) is None
    loss = configured_loss(cfg_of("train.use_eaft_loss=true", "train.eaft_alpha=2"))
    assert (loss.kind, loss.alpha) == ("eaft", 2.0)
    assert configured_loss(cfg_of("train.use_asft_loss=true", "train.asft_alpha=0.3")).alpha == 0.3
    assert "use_dft_loss" in blocked_by(cfg_of("train.use_dft_loss=true"), micro_model())


def _train(tmp_path, *overrides, peft=False):
    from transformers import Trainer

    from llmpipe.training.args import training_arguments
    from llmpipe.training.sft_losses import loss_trainer_class

    cfg = cfg_of(*overrides, "train.max_steps=4", "train.per_device_train_batch_size=2", "train.learning_rate=1e-2",
                 "train.save_strategy=no", "model.disable_gradient_checkpointing=true",
                 "train.finetuning_type=" + ("lora" if peft else "full"))
    m = micro_model()
    if peft:
        from peft import LoraConfig, get_peft_model

        m = get_peft_model(m, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    labels = X.clone()
    labels[:, :4] = -100                                                    # a prompt without labels
    rows = [{"input_ids": x, "labels": y} for x, y in zip(X.repeat(2, 1), labels.repeat(2, 1))]
    seen = []
    trainer = loss_trainer_class(Trainer, cfg, seen.append)(model=m, args=training_arguments(cfg, tmp_path),
                                                              train_dataset=rows)
    first = m(input_ids=X, labels=labels).loss.item()
    trainer.train()
    return trainer, seen, first, m(input_ids=X, labels=labels).loss.item()


@pytest.mark.slow
@pytest.mark.parametrize("flag,peft", [("train.use_dft_loss=true", False), ("train.use_eaft_loss=true", False),
                                       ("train.use_asft_loss=true", False), ("train.use_asft_loss=true", True)])
def test_training_with_each_loss_learns(tmp_path, flag, peft):
    trainer, seen, first, last = _train(tmp_path, flag, peft=peft)
    assert seen and seen[0].startswith("SFT loss: " + flag.split("_")[1].upper())
    assert trainer.compute_loss_func is not None and trainer.compute_loss_func.kind in flag
    assert last < first                                                     # the cross-entropy went down
    if "asft" in flag:                                                      # full: a frozen copy; LoRA: adapters off
        assert (trainer.llmpipe_reference is None) == peft
        if not peft:
            assert not any(p.requires_grad for p in trainer.llmpipe_reference.parameters())
            assert not torch.equal(trainer.llmpipe_reference.lm_head.weight, trainer.model.lm_head.weight)
