"""APOLLO (apollo.*) and Muon (muon.*) from llmpipe.training.optimizers on a micro Llama: the optimizer in use is
the right class with the configured hyper-parameters, a few steps lower the loss, and the transformers Trainer runs
it (with its scheduler and a checkpoint that resumes)."""
from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow   # trains micro models for a few steps

from methods_support import X, cfg_of, micro_model

ARGS = types.SimpleNamespace(learning_rate=1e-2, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                             weight_decay=0.01)


def losses_over(model, opt, steps: int = 4) -> list[float]:
    out = []
    for _ in range(steps):
        loss = model(input_ids=X, labels=X).loss
        out.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return out + [model(input_ids=X, labels=X).loss.item()]


def test_apollo_groups_carry_the_configured_projection_and_learn():
    pytest.importorskip("apollo_torch")
    from apollo_torch import APOLLOAdamW

    from llmpipe.training.optimizers import build_optimizer, describe

    cfg = cfg_of("apollo.use_apollo=true", "train.finetuning_type=full", "apollo.rank=4", "apollo.scale=8",
                 "apollo.target='q_proj,v_proj'", "apollo.update_interval=2", "apollo.proj=svd",
                 "apollo.scale_type=tensor", "apollo.proj_type=left", "apollo.scale_front=true")
    m = micro_model()
    opt = build_optimizer(m, cfg, ARGS)
    assert type(opt) is APOLLOAdamW and opt.scale_front is True
    projected = [g for g in opt.param_groups if "rank" in g]
    assert len(projected) == 1 and len(projected[0]["params"]) == 4                 # 2 layers x (q, v)
    assert {k: projected[0][k] for k in ("rank", "proj", "proj_type", "update_proj_gap", "scale", "scale_type")} == {
        "rank": 4, "proj": "svd", "proj_type": "left", "update_proj_gap": 2, "scale": 8.0, "scale_type": "tensor"}
    assert projected[0]["weight_decay"] == 0.01 and opt.defaults["lr"] == 1e-2
    seen = losses_over(m, opt)
    assert seen[-1] < seen[0]
    q = m.model.layers[0].self_attn.q_proj.weight
    assert 4 in opt.state[q]["exp_avg"].shape                                        # moments live in rank 4
    assert describe(cfg).startswith("APOLLO rank 4 svd tensor-wise")
    every = build_optimizer(micro_model(), cfg_of("apollo.use_apollo=true", "train.finetuning_type=full"), ARGS)
    assert len([p for g in every.param_groups if "rank" in g for p in g["params"]]) == 14   # all linear but the head


def test_layerwise_apollo_steps_during_backward():
    pytest.importorskip("apollo_torch")
    from apollo_torch import APOLLOAdamW
    from transformers.trainer_pt_utils import LayerWiseDummyOptimizer

    from llmpipe.training.optimizers import build_optimizer

    m = micro_model()
    opt = build_optimizer(m, cfg_of("apollo.use_apollo=true", "apollo.layerwise=true", "train.finetuning_type=full"),
                          ARGS)
    assert isinstance(opt, LayerWiseDummyOptimizer)
    assert {type(o) for o in opt.optimizer_dict.values()} == {APOLLOAdamW}
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    m(input_ids=X, labels=X).loss.backward()                                         # no optimizer.step()
    assert all(not torch.equal(p.detach(), before[n]) for n, p in m.named_parameters())


def test_muon_orthogonalises_the_hidden_matrices_and_adamw_takes_the_rest():
    from llmpipe.training.muon import MuonWithAdamW
    from llmpipe.training.optimizers import build_optimizer, muon_split

    cfg = cfg_of("muon.use_muon=true", "train.finetuning_type=full", "muon.momentum=0.9", "muon.ns_steps=3",
                 "muon.nesterov=false", "muon.adjust_lr=original")
    m = micro_model()
    opt = build_optimizer(m, cfg, ARGS)
    assert isinstance(opt, MuonWithAdamW)
    muon, adamw = opt.parts
    assert type(muon) is torch.optim.Muon and type(adamw) is torch.optim.AdamW
    g = muon.param_groups[0]
    assert (g["lr"], g["momentum"], g["ns_steps"], g["nesterov"], g["adjust_lr_fn"], g["weight_decay"]) == (
        1e-2, 0.9, 3, False, "original", 0.01)
    names = {id(p): n for n, p in m.named_parameters()}
    assert len(g["params"]) == 14 and all(p.ndim == 2 for p in g["params"])          # q,k,v,o,gate,up,down x 2
    rest = sorted(names[id(p)] for grp in adamw.param_groups for p in grp["params"])
    assert "model.embed_tokens.weight" in rest and all("norm" in n or "embed" in n for n in rest)
    assert [id(p) for p in muon_split(m)[0]] == [id(p) for p in g["params"]]
    seen = losses_over(m, opt)
    assert seen[-1] < seen[0]
    assert opt.param_groups == muon.param_groups + adamw.param_groups                # the scheduler sets both lrs


@pytest.mark.parametrize("method", ["apollo.use_apollo=true", "muon.use_muon=true"])
def test_the_trainer_runs_it_and_resumes(tmp_path, method):
    pytest.importorskip("apollo_torch" if "apollo" in method else "torch")
    from transformers import Trainer

    from llmpipe.training.args import training_arguments
    from llmpipe.training.optimizers import trainer_class

    rows = [{"input_ids": x, "labels": x} for x in X.repeat(2, 1)]
    seen: list[str] = []
    for steps, resume in ((2, None), (4, tmp_path / "checkpoint-2")):
        cfg = cfg_of(method, "train.finetuning_type=full", f"train.max_steps={steps}", "train.save_steps=2",
                     "train.per_device_train_batch_size=2", "train.learning_rate=1e-2",
                     "model.disable_gradient_checkpointing=true")
        m = micro_model()
        first = m(input_ids=X, labels=X).loss.item()
        trainer = trainer_class(Trainer, cfg, seen.append)(model=m, args=training_arguments(cfg, tmp_path),
                                                           train_dataset=rows)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    inner = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    if "apollo" in method:
        from apollo_torch import APOLLOAdamW

        assert type(inner) is APOLLOAdamW                                            # (its class is named AdamW)
    else:
        from llmpipe.training.muon import MuonWithAdamW

        assert type(inner) is MuonWithAdamW
    assert trainer.state.global_step == 4 and seen[0].startswith("optimizer: " + ("APOLLO" if "apollo" in method
                                                                                    else "Muon"))
    assert m(input_ids=X, labels=X).loss.item() < first
