"""OFT (train.finetuning_type=oft, llmpipe.models.oft): oft.* reach PEFT's OFTConfig, the model the train stage
builds has only the orthogonal blocks trainable, a short Trainer run lowers the loss, and the save writes the PEFT
adapter beside a merged model that computes what the trained adapters computed."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow   # builds and trains a micro model

from methods_support import X, cfg_of, logits, micro_model, model_dir  # noqa: F401  (model_dir is a fixture)


def test_oft_config_from_the_family():
    from peft import OFTConfig

    from llmpipe.models.oft import oft_config

    c = oft_config(cfg_of("train.finetuning_type=oft", "oft.rank=4", "oft.block_size=0", "oft.target='q_proj,v_proj'",
                          "oft.module_dropout=0.1"), micro_model())
    assert isinstance(c, OFTConfig) and (c.r, c.oft_block_size, c.module_dropout) == (4, 0, 0.1)
    assert set(c.target_modules) == {"q_proj", "v_proj"}
    every = oft_config(cfg_of("train.finetuning_type=oft"), micro_model())
    assert set(every.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (every.r, every.oft_block_size) == (0, 32)
    from llmpipe.models.adapters import AdapterError

    with pytest.raises(AdapterError, match="oft.target: qproj not found"):
        oft_config(cfg_of("train.finetuning_type=oft", "oft.target=qproj"), micro_model())


def test_oft_trains_and_saves_adapter_and_merged_model(model_dir, tmp_path):  # noqa: F811  (the fixture)
    from transformers import AutoModelForCausalLM, Trainer

    from llmpipe.models.trainable import build, save
    from llmpipe.training.args import training_arguments

    cfg = cfg_of("train.finetuning_type=oft", "oft.block_size=16", "train.max_steps=4",
                 "train.per_device_train_batch_size=2", "train.learning_rate=1e-2", "train.save_strategy=no",
                 "model.disable_gradient_checkpointing=true")
    seen: list[str] = []
    model = build(model_dir, cfg, log=seen.append)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".oft_R." in n for n in names)                              # only the orthogonal blocks
    assert any(line.startswith("oft: ") for line in seen)
    base = logits(micro_model())
    assert torch.allclose(logits(model), base, atol=1e-5)                           # identity rotations at start
    first = model(input_ids=X, labels=X).loss.item()
    rows = [{"input_ids": x, "labels": x} for x in X.repeat(2, 1)]
    Trainer(model=model, args=training_arguments(cfg, tmp_path / "ckpt"), train_dataset=rows).train()
    assert model(input_ids=X, labels=X).loss.item() < first
    trained = logits(model)
    save(model, tmp_path / "model", cfg, log=seen.append)
    adapter = json.loads((tmp_path / "oft_adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "OFT" and adapter["oft_block_size"] == 16
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert not any("oft" in n for n, _ in merged.named_parameters())                # a plain model
    assert torch.allclose(logits(merged), trained, atol=1e-4)
    assert not torch.allclose(logits(merged), base, atol=1e-3)


def test_a_block_size_that_does_not_divide_is_reported():
    from llmpipe.models.oft import attach

    seen: list[str] = []
    attach(micro_model(), cfg_of("train.finetuning_type=oft", "oft.block_size=48", "oft.target='q_proj,down_proj'"),
           seen.append)
    # q_proj's input is 64 and down_proj's 128: PEFT shrinks 48 to a divisor (32)
    assert seen == ["OFT: oft.block_size=48 does not divide q_proj's input size 64: it uses blocks of 32",
                    "OFT: oft.block_size=48 does not divide down_proj's input size 128: it uses blocks of 32"]
    quiet: list[str] = []
    attach(micro_model(), cfg_of("train.finetuning_type=oft", "oft.block_size=16"), quiet.append)
    assert quiet == []
