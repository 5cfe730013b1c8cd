"""Selective gradient checkpointing (model.gradient_checkpointing=attention/mlp): the chosen block of every
decoder layer runs again in the backward pass (its projections are called twice), the other block once, and the
loss and gradients are those of the model without checkpointing; no-grad calls are untouched."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from tests.unit.methods_support import X, micro_model


def _cfg(mode: str, disabled: bool = False):
    return SimpleNamespace(model=SimpleNamespace(gradient_checkpointing=mode, disable_gradient_checkpointing=disabled))


def _calls(model) -> dict[str, int]:
    counts = {"q_proj": 0, "gate_proj": 0}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in counts:
            module.register_forward_hook(lambda *a, leaf=leaf: counts.__setitem__(leaf, counts[leaf] + 1))
    return counts


def _loss_and_grads(model):
    model.train()
    model.zero_grad()
    loss = model(input_ids=X, labels=X).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode, again", [("attention", "q_proj"), ("mlp", "gate_proj")])
def test_the_chosen_block_is_recomputed_and_the_gradients_are_unchanged(mode, again):
    from llmpipe.training.selective_gc import apply

    plain = micro_model()
    base_loss, base_grads = _loss_and_grads(plain)
    model = micro_model()
    layers = model.config.num_hidden_layers
    assert apply(model, _cfg(mode), log=lambda _: None) == layers
    counts = _calls(model)
    loss, grads = _loss_and_grads(model)
    other = "gate_proj" if again == "q_proj" else "q_proj"
    assert counts[again] == 2 * layers and counts[other] == layers      # forward + recompute vs forward only
    assert loss == pytest.approx(base_loss, abs=1e-6)
    for name, g in base_grads.items():
        assert torch.allclose(grads[name], g, atol=1e-6), name
    with torch.no_grad():
        counts.update(q_proj=0, gate_proj=0)
        model(input_ids=X)
    assert counts == {"q_proj": layers, "gate_proj": layers}


def test_full_and_disabled_wrap_nothing():
    from llmpipe.training.selective_gc import apply

    assert apply(micro_model(), _cfg("full"), log=lambda _: None) == 0
    assert apply(micro_model(), _cfg("attention", disabled=True), log=lambda _: None) == 0


def test_layer_level_checkpointing_is_off_in_the_training_arguments(tmp_path):
    from llmpipe.training.args import training_arguments
    from tests.unit.methods_support import cfg_of

    assert training_arguments(cfg_of(), tmp_path).activation_checkpointing
    assert not training_arguments(cfg_of("model.gradient_checkpointing=attention"), tmp_path).activation_checkpointing
