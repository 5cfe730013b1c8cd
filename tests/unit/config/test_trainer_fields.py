"""transformers' own training arguments under train.* (issue 16): the generated table matches the installed
transformers, older names translate onto llmpipe's parameters, fields llmpipe owns are refused with their
parameter named, and what is passed through reaches TrainingArguments as written (every field is also set by
tests/unit/config/test_flag_effects.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from llmpipe.config.families.trainer_fields import OWNED, PASSTHROUGH
from llmpipe.pipeline.preflight import validate

ROOT = Path(__file__).resolve().parents[3]


def test_the_generated_table_matches_the_installed_transformers():
    pytest.importorskip("transformers")
    from llmpipe.tools import trainer_fields

    assert trainer_fields.TARGET.read_text() == trainer_fields.render(), (
        "llmpipe/config/families/trainer_fields.py was generated from another transformers: run "
        "`python -m llmpipe.tools.trainer_fields --write` and review the new fields")


def test_no_field_is_both_passed_and_owned():
    assert not set(PASSTHROUGH) & set(OWNED)
    assert {"deepspeed", "local_rank", "resume_from_checkpoint", "hub_token"} <= set(OWNED)


@pytest.mark.parametrize("overrides,path,want", [
    (["train.gradient_checkpointing=false"], "model.disable_gradient_checkpointing", True),
    (["++train.gradient_checkpointing_kwargs={use_reentrant:false}"], "model.use_reentrant_gc", False),
    (["train.group_by_length=true"], "train.train_sampling_strategy", "group_by_length"),
])
def test_older_names_translate(hydra_compose, overrides, path, want):
    v, problems = validate(hydra_compose(*overrides))
    assert not problems, [p.render() for p in problems]
    assert OmegaConf.select(v.cfg, path) == want
    assert any("older flag" in n for n in v.notes), v.notes


def test_checkpointing_options_without_a_parameter_are_refused(hydra_compose):
    v, problems = validate(hydra_compose("++train.gradient_checkpointing_kwargs={preserve_rng_state:false}"))
    assert v is None and [p.key for p in problems] == ["train.gradient_checkpointing_kwargs"]


def test_an_owned_field_names_its_parameter(hydra_compose):
    v, problems = validate(hydra_compose("+train.deepspeed=z2"))
    assert v is None
    assert any(p.key == "train.deepspeed" and "launch.deepspeed" in p.message for p in problems)


def test_owned_field_on_the_command_line_exits_2_and_names_its_parameter(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "llmpipe", "model=tiny", "train.ddp_timeout=60"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "use launch.ddp_timeout" in proc.stderr + proc.stdout
    assert not any(tmp_path.iterdir())


def test_passed_through_values_reach_training_arguments(hydra_compose, tmp_path):
    pytest.importorskip("transformers")
    from llmpipe.training.args import training_arguments

    v, problems = validate(hydra_compose("train.torch_compile=true", "train.neftune_noise_alpha=5",
                                         "train.label_smoothing_factor=0.1", "train.debug=underflow_overflow",
                                         "++train.accelerator_config={split_batches:true}"))
    assert not problems, [p.render() for p in problems]
    args = training_arguments(v.obj, tmp_path)
    assert args.torch_compile is True and args.neftune_noise_alpha == 5 and args.label_smoothing_factor == 0.1
    assert args.accelerator_config.split_batches is True
    assert [str(getattr(d, "value", d)) for d in args.debug] == ["underflow_overflow"]
    unset = training_arguments(validate(hydra_compose())[0].obj, tmp_path)
    assert unset.neftune_noise_alpha is None and unset.label_smoothing_factor == 0.0   # transformers' defaults
