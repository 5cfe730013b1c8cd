"""The special optimizers of llmpipe.training.optimizers on a micro Llama: each one's defining behaviour
(GaLore projects the targeted weights' gradients, layer-wise GaLore steps inside backward, BAdam updates one
block / a ratio of entries, Adam-mini, LoRA+ learning rates), inside the real transformers Trainer too; and the
token accuracy of train.compute_accuracy."""
from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow   # trains micro models for a few steps

from test_methods_models import X, cfg_of, micro_model  # noqa: E402  (same folder)

ARGS = types.SimpleNamespace(learning_rate=1e-2, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                             weight_decay=0.0)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(model, before) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}


def step(model, opt, n: int = 1):
    for _ in range(n):
        model(input_ids=X, labels=X).loss.backward()
        opt.step()
        opt.zero_grad()


def test_galore_projects_the_targeted_linear_weights():
    pytest.importorskip("galore_torch")
    from llmpipe.training.optimizers import build_optimizer

    m = micro_model()
    opt = build_optimizer(m, cfg_of("galore=default", "train.finetuning_type=full", "galore.rank=4",
                                    "galore.target='q_proj,v_proj'", "galore.update_interval=2"), ARGS)
    projected = [g for g in opt.param_groups if "rank" in g]
    assert len(projected) == 1 and len(projected[0]["params"]) == 4                 # 2 layers x (q, v)
    assert projected[0]["rank"] == 4 and projected[0]["update_proj_gap"] == 2 and projected[0]["scale"] == 2.0
    before = snapshot(m)
    step(m, opt, 2)
    assert changed(m, before) == set(before)
    q = m.model.layers[0].self_attn.q_proj.weight
    assert sorted(opt.state[q]["exp_avg"].shape) == [4, 64]                          # moments live in rank 4
    all_linear = build_optimizer(micro_model(), cfg_of("galore=default", "train.finetuning_type=full"), ARGS)
    assert len([p for g in all_linear.param_groups if "rank" in g for p in g["params"]]) == 14


def test_layerwise_galore_steps_during_backward():
    pytest.importorskip("galore_torch")
    from transformers.trainer_pt_utils import LayerWiseDummyOptimizer

    from llmpipe.training.optimizers import build_optimizer

    m = micro_model()
    opt = build_optimizer(m, cfg_of("galore=layerwise", "train.finetuning_type=full"), ARGS)
    assert isinstance(opt, LayerWiseDummyOptimizer) and len(opt.optimizer_dict) == len(list(m.parameters()))
    before = snapshot(m)
    m(input_ids=X, labels=X).loss.backward()                                        # no optimizer.step()
    assert changed(m, before) == set(before)
    assert all(p.grad is None for p in m.parameters())                              # zeroed by the hook


def test_badam_layer_mode_updates_one_block_at_a_time(capsys):
    pytest.importorskip("badam")
    from llmpipe.training.optimizers import build_optimizer

    m = micro_model()
    opt = build_optimizer(m, cfg_of("badam=layer", "train.finetuning_type=full", "badam.switch_interval=2"), ARGS)
    before = snapshot(m)
    step(m, opt, 1)   # BAdam 1.4 switches after steps 1, 3, 5, ... for switch_interval=2
    assert {n.split(".")[2] for n in changed(m, before)} == {"0"}                   # block 0 only
    before = snapshot(m)
    step(m, opt, 2)
    assert {n.split(".")[2] for n in changed(m, before)} == {"1"}                   # then block 1
    assert "trainable" not in capsys.readouterr().out                               # badam.verbose=0 is quiet
    m = micro_model()
    opt = build_optimizer(m, cfg_of("badam=layer", "train.finetuning_type=full", "badam.switch_interval=-1",
                                    "badam.switch_mode=descending"), ARGS)
    before = snapshot(m)
    step(m, opt, 3)
    assert {n.split(".")[2] for n in changed(m, before)} == {"1"}                   # -1: never switches


def test_badam_ratio_mode_updates_a_share_of_each_weight():
    pytest.importorskip("badam")
    from llmpipe.training.optimizers import build_optimizer

    m = micro_model()
    opt = build_optimizer(m, cfg_of("badam=ratio", "train.finetuning_type=full", "badam.update_ratio=0.1"), ARGS)
    before = snapshot(m)
    step(m, opt)
    w = "model.layers.0.mlp.up_proj.weight"
    share = (m.get_parameter(w) != before[w]).float().mean().item()
    assert 0.02 < share <= 0.11, share
    assert "model.embed_tokens.weight" not in changed(m, before)


def test_adam_mini_trains_full_weights():
    pytest.importorskip("adam_mini")
    from llmpipe.training.optimizers import build_optimizer

    m = micro_model()
    opt = build_optimizer(m, cfg_of("badam.use_adam_mini=true", "train.finetuning_type=full"), ARGS)
    assert type(opt).__name__ == "Adam_mini"
    first = m(input_ids=X, labels=X).loss.item()
    before = snapshot(m)
    step(m, opt, 4)
    assert changed(m, before) == set(before) and m(input_ids=X, labels=X).loss.item() < first


def test_loraplus_gives_b_a_larger_learning_rate():
    from peft import get_peft_model

    from llmpipe.models.adapters import lora_config
    from llmpipe.training.optimizers import build_optimizer

    cfg = cfg_of("lora=plus", "lora.rank=4")
    peft = get_peft_model(micro_model(), lora_config(cfg, micro_model()))
    opt = build_optimizer(peft, cfg, ARGS)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    named = dict(peft.named_parameters())
    a = named["base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"]
    b = named["base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"]
    assert lr_of[id(a)] == pytest.approx(1e-2) and lr_of[id(b)] == pytest.approx(16 * 1e-2)
    assert build_optimizer(peft, cfg_of("lora.rank=4"), ARGS) is None               # plain LoRA: train.optim


def test_token_accuracy_counts_shifted_label_tokens():
    import numpy as np

    from llmpipe.training.metrics import token_accuracy, trainer_kwargs

    labels = np.array([[-100, -100, 5, 6, 7], [-100, 3, 4, -100, -100]])
    preds = np.array([[0, 5, 6, 0, 9], [3, 4, 1, 1, -100]])   # position t predicts label t + 1
    assert token_accuracy(preds, labels) == pytest.approx(4 / 5)   # 5,6 | 3,4 right; 7 wrong
    assert trainer_kwargs(cfg_of()) == {} and "compute_metrics" in trainer_kwargs(cfg_of("train.compute_accuracy=true"))


@pytest.mark.parametrize("method", ["galore=layerwise", "badam=ratio", "badam=layer", "badam.use_adam_mini=true"])
def test_trainer_class_runs_the_special_optimizer_in_the_trainer(tmp_path, method):
    pytest.importorskip("galore_torch" if "galore" in method else "badam" if "badam=" in method else "adam_mini")
    from transformers import Trainer

    from llmpipe.training.args import training_arguments
    from llmpipe.training.optimizers import trainer_class

    cfg = cfg_of(method, "train.finetuning_type=full", "train.max_steps=3", "train.per_device_train_batch_size=2",
                 "train.learning_rate=1e-2", "train.save_strategy=no", "model.disable_gradient_checkpointing=true")
    m = micro_model()
    rows = [{"input_ids": x, "labels": x} for x in X.repeat(2, 1)]
    trainer = trainer_class(Trainer, cfg)(model=m, args=training_arguments(cfg, tmp_path), train_dataset=rows)
    first = m(input_ids=X, labels=X).loss.item()
    trainer.train()
    assert type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
                ).__name__ in ("LayerWiseDummyOptimizer", "BlockOptimizerRatio", "QuietBlockOptimizer", "Adam_mini")
    assert m(input_ids=X, labels=X).loss.item() < first


def test_galore_checkpoint_resumes(tmp_path):
    pytest.importorskip("galore_torch")
    from transformers import Trainer

    from llmpipe.training.args import training_arguments
    from llmpipe.training.optimizers import trainer_class

    rows = [{"input_ids": x, "labels": x} for x in X.repeat(2, 1)]
    for steps, resume in ((2, None), (3, tmp_path / "checkpoint-2")):
        cfg = cfg_of("galore=default", "train.finetuning_type=full", f"train.max_steps={steps}", "train.save_steps=2",
                     "train.per_device_train_batch_size=2", "model.disable_gradient_checkpointing=true")
        trainer = trainer_class(Trainer, cfg)(model=micro_model(), args=training_arguments(cfg, tmp_path),
                                              train_dataset=rows)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)   # projectors unpickle safely
    assert trainer.state.global_step == 3
