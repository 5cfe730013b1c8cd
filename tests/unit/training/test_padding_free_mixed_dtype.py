"""Freeze fine-tuning and LLaMA Pro with train.bf16=true keep the trainable layers in fp32 beside bf16 frozen
ones. The padding-free isolation check runs the model outside the Trainer: it must run it under the autocast
training uses (it died with "expected m1 and m2 to have the same dtype" before)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from methods_support import micro_model

from llmpipe.training.padding_free import decide


def _mixed(dtype):
    model = micro_model(dtype=dtype)
    last = model.model.layers[-1]
    last.to(torch.float32)   # the trainable layer, upcast as freeze fine-tuning does
    return model


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_isolation_check_runs_a_model_of_mixed_float_dtypes(dtype):
    model = _mixed(dtype)
    cfg = SimpleNamespace(train=SimpleNamespace(padding_free=None),
                          model=SimpleNamespace(shift_attn=False, use_unsloth=False))
    with pytest.raises(RuntimeError, match="dtype"):   # the defect: outside autocast the layers disagree
        model(input_ids=torch.tensor([[1, 2, 3]]))
    notes = []
    assert decide(cfg, model, notes.append) is True, notes
    assert "padding-free" in notes[-1]
    assert {p.dtype for p in model.parameters()} == {dtype, torch.float32}   # the check changed no weight
