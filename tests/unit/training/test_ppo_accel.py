"""PPO's accelerate plumbing (llmpipe.training.ppo_accel): models are moved to the accelerator's device (quantized
ones stay where loading put them), the trackers get the train/ppo hyper-parameters without secrets, and
train.log_level sets transformers' verbosity as the Trainer would."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from llmpipe.config.root import LlmpipeConfig
from llmpipe.training import ppo_accel


def test_place_moves_a_model_to_the_device():
    model = torch.nn.Linear(2, 2)
    moved = ppo_accel.place(model, torch.device("meta"), log=lambda _m: None)
    assert next(moved.parameters()).device.type == "meta"
    assert ppo_accel.place(None, torch.device("meta"), log=lambda _m: None) is None


def test_place_leaves_quantized_weights_where_they_are():
    model = torch.nn.Linear(2, 2)
    model.is_quantized = True
    assert next(ppo_accel.place(model, torch.device("meta"), log=lambda _m: None).parameters()).device.type == "cpu"


def test_tracker_config_has_hyperparameters_but_no_secret():
    cfg = LlmpipeConfig()
    params = ppo_accel.hyperparameters(cfg)
    assert params["train.learning_rate"] == cfg.train.learning_rate and "ppo.target" in params
    from llmpipe.secrets import secret_paths

    assert not set(secret_paths()) & set(params)


def test_accelerator_mixed_precision_follows_the_train_family(tmp_path):
    cfg = LlmpipeConfig()
    cfg.train.bf16 = True
    acc = ppo_accel.make_accelerator(cfg, tmp_path, None)
    assert acc.mixed_precision == "bf16" and acc.device.type == "cpu"
    cfg.train.bf16 = False
    assert ppo_accel.make_accelerator(cfg, tmp_path, None).mixed_precision == "no"   # a second run changes it


def test_log_level_sets_transformers_verbosity():
    from transformers.utils import logging as hf_logging

    cfg = LlmpipeConfig()
    before = hf_logging.get_verbosity()
    try:
        cfg.train.log_level = "error"
        ppo_accel.set_log_level(cfg)
        assert hf_logging.get_verbosity() == hf_logging.ERROR
    finally:
        hf_logging.set_verbosity(before)
