"""train.fp8 for real on a GPU of compute capability >= 8.9: the Trainer's Accelerator runs accelerate's torchao
fp8 recipe (linear layers become Float8Linear) and a micro Llama learns. Skipped without such a GPU; on CPU
pre-flight refuses train.fp8 (rule fp8-device, tests/unit/config/test_rules.py)."""
from __future__ import annotations

import pytest
import torch
from methods_support import X, cfg_of, micro_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability(0) < (8, 9),
    reason="needs a CUDA GPU of compute capability >= 8.9")]


def test_fp8_trainer_trains_with_the_torchao_recipe(tmp_path):
    pytest.importorskip("torchao")
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from llmpipe.training.fp8 import fp8_trainer_class

    cfg = cfg_of("train.fp8=true", "train.fp8_backend=torchao")
    seen: list[str] = []
    cls = fp8_trainer_class(Trainer, cfg, seen.append)
    rows = Dataset.from_dict({"input_ids": X.repeat(8, 1).tolist(), "labels": X.repeat(8, 1).tolist()})
    args = TrainingArguments(str(tmp_path), max_steps=20, logging_steps=1, per_device_train_batch_size=16,
                             learning_rate=3e-3, report_to=[], save_strategy="no", bf16=True)
    trainer = cls(model=micro_model(hidden_size=128, intermediate_size=256), args=args, train_dataset=rows)
    trainer.train()
    assert seen == ["fp8 mixed precision through accelerate (torchao)"]
    assert trainer.accelerator.mixed_precision == "fp8" and trainer.accelerator.fp8_enabled
    assert any(type(m).__name__ == "Float8Linear" for m in trainer.model.modules())
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
