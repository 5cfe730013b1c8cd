"""QOFT (train.finetuning_type=oft with quantization.bit): OFT adapters on a bitsandbytes 4-bit base train on
the CPU, and the saved model is the base loaded unquantized with the rotations folded in (as llmpipe merges
QLoRA). EETQ bases, which PEFT's OFT can only run forward, are refused (rule oft-quantized)."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")
pytestmark = pytest.mark.slow   # builds and trains a micro model

from methods_support import X, cfg_of, logits, micro_model, model_dir  # noqa: F401  (model_dir is a fixture)


def test_qoft_trains_on_a_4bit_base_and_merges_into_the_unquantized_one(model_dir, tmp_path):  # noqa: F811
    from transformers import AutoModelForCausalLM, Trainer

    from llmpipe.models.trainable import build, save
    from llmpipe.training.args import training_arguments

    cfg = cfg_of("train.finetuning_type=oft", "quantization=bnb4", "oft.block_size=16", "train.max_steps=6",
                 "train.per_device_train_batch_size=2", "train.learning_rate=2e-2", "train.save_strategy=no",
                 "model.disable_gradient_checkpointing=true", "train.use_cpu=true")
    seen: list[str] = []
    model = build(model_dir, cfg, log=seen.append)
    assert any(type(m.get_base_layer()).__name__ == "Linear4bit" for m in model.modules() if hasattr(m, "oft_R"))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".oft_R." in n for n in names)
    before = logits(model)
    first = model(input_ids=X, labels=X).loss.item()
    rows = [{"input_ids": x, "labels": x} for x in X.repeat(2, 1)]
    Trainer(model=model, args=training_arguments(cfg, tmp_path / "ckpt"), train_dataset=rows).train()
    assert model(input_ids=X, labels=X).loss.item() < first
    trained = logits(model)
    save(model, tmp_path / "model", cfg, log=seen.append)
    assert any("merged into the base loaded unquantized" in line for line in seen)
    assert json.loads((tmp_path / "oft_adapter" / "adapter_config.json").read_text())["peft_type"] == "OFT"
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert "quantization_config" not in config
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert not any("oft" in n for n, _ in merged.named_parameters())
    base = logits(micro_model())
    # the rotations the 4-bit run learned move the unquantized base the same way
    moved, learned = (logits(merged) - base).flatten(), (trained - before).flatten()
    assert float(torch.nn.functional.cosine_similarity(moved, learned, dim=0)) > 0.9
