"""The reference stage in the plan (no torch): when the rule picks it and why, what its fingerprint covers
(the reference model, the data, the template and cutoff_len; not beta, the loss, lora.rank or the learning
rate), and pre-flight refusals of pref.precompute_reference where it cannot take effect."""
from __future__ import annotations

import pytest

from llmpipe.config.compose import compose
from llmpipe.pipeline.dag import build_plan, plan_problems
from llmpipe.pipeline.fingerprint import compute_fingerprints
from llmpipe.pipeline.preflight import validate

DPO = ("+recipe=dpo_qwen", "model=tiny")
KTO = ("+recipe=kto_qwen", "model=tiny")


def _plan(tmp_path, *overrides):
    validated, problems = validate(compose(list(overrides)))
    assert not problems, problems
    assert not plan_problems(validated.cfg)
    plan = build_plan(validated.cfg)
    compute_fingerprints(plan, tmp_path)
    return plan


def _problems(*overrides):
    _, problems = validate(compose(list(overrides)))
    return [p.key for p in problems]


def _ref(tmp_path, *overrides) -> str:
    return _plan(tmp_path, *DPO, "pref.precompute_reference=true", *overrides).node("reference").fingerprint


def test_a_run_of_whole_epochs_gets_the_stage(tmp_path):
    plan = _plan(tmp_path, *DPO, "train.num_train_epochs=1")
    assert plan.ids() == ["load", "adapt", "reference", "train"]
    assert plan.node("reference").inputs == {"load": "load"}        # not the adapter: lora.* is not read
    assert plan.node("train").inputs["reference"] == "reference"
    assert "1 epoch(s)" in plan.node("reference").label
    assert plan.node("train").label.endswith("reference from its stage")


@pytest.mark.parametrize("overrides, reason", [
    (("train.max_steps=2", "data.max_samples=64"), "8 rows visited < data.max_samples=64: shorter than one epoch"),
    (("train.max_steps=2",), "data of unknown size"),
    (("train.num_train_epochs=0.5",), "< 1: most rows are never visited"),
    (("pref.precompute_reference=false",), "pref.precompute_reference=false"),
    (("model.shift_attn=true",), "S²-Attn"),
])
def test_inline_when_the_stage_does_not_pay_or_cannot_reproduce_the_reference(tmp_path, overrides, reason):
    plan = _plan(tmp_path, *DPO, "train.per_device_train_batch_size=4", *overrides)
    assert "reference" not in plan.ids()
    assert reason in plan.node("train").label, plan.node("train").label


def test_at_least_an_epoch_of_rows_gets_the_stage(tmp_path):
    plan = _plan(tmp_path, *DPO, "train.max_steps=4", "train.per_device_train_batch_size=4", "data.max_samples=16")
    assert "16 rows visited >= data.max_samples=16" in plan.node("reference").label


def test_the_fingerprint_covers_what_the_log_probs_depend_on(tmp_path):
    base = _ref(tmp_path)
    for same in (("pref.beta=0.5",), ("pref.loss=ipo",), ("pref.loss=kto_pair",), ("lora.rank=4",),
                 ("train.learning_rate=1e-3",), ("pref.ftx=0.5",),
                 ("train.per_device_train_batch_size=2",), ("train.num_train_epochs=5",)):
        assert _ref(tmp_path, *same) == base, same
    for other in (("data.cutoff_len=64",), ("data.template=chatml",), ("pref.ld_alpha=0.5",),
                  ("pref.ref_model=builtin:tiny-random",), ("data.max_samples=8",), ("train.bf16=true",),
                  ("train.max_steps=7",)):
        assert _ref(tmp_path, *other) != base, other


def test_a_run_shorter_than_an_epoch_scores_the_rows_its_steps_read(tmp_path):
    """With train.max_steps the stage scores only the rows those steps read, so what decides them (the steps,
    the sampler's seed, the batches, the ranks) is in its fingerprint; beta, the loss, rank and lr are not."""
    from llmpipe.config.rules.reference_plan import VISIT_KEYS

    short = ("train.max_steps=7", "train.per_device_train_batch_size=4")
    plan = _plan(tmp_path, *DPO, "pref.precompute_reference=true", *short)
    assert set(VISIT_KEYS) <= set(plan.node("reference").reads)
    base = _ref(tmp_path, *short)
    for same in (("pref.beta=0.5",), ("pref.loss=ipo",), ("lora.rank=4",), ("train.learning_rate=1e-3",)):
        assert _ref(tmp_path, *short, *same) == base, same
    for other in (("train.max_steps=8",), ("train.seed=3",), ("train.data_seed=5",), ("train.disable_shuffling=true",),
                  ("train.per_device_train_batch_size=2",), ("train.gradient_accumulation_steps=2",)):
        assert _ref(tmp_path, *short, *other) != base, other
    # steps that cover data.max_samples rows read every row: the fingerprint does not depend on them
    whole = _plan(tmp_path, *DPO, "pref.precompute_reference=true", "train.max_steps=4", "data.max_samples=16",
                  "train.per_device_train_batch_size=4")
    assert "train.seed" not in whole.node("reference").reads


def test_kto_reads_the_batch_size_its_kl_completions_rotate_in(tmp_path):
    a = _plan(tmp_path, *KTO, "pref.precompute_reference=true", "train.per_device_train_batch_size=4")
    b = _plan(tmp_path, *KTO, "pref.precompute_reference=true", "train.per_device_train_batch_size=2")
    c = _plan(tmp_path, *KTO, "pref.precompute_reference=true", "train.per_device_train_batch_size=4", "pref.beta=0.3")
    assert a.node("reference").fingerprint != b.node("reference").fingerprint
    assert a.node("reference").fingerprint == c.node("reference").fingerprint


def test_reference_free_losses_have_no_stage(tmp_path):
    plan = _plan(tmp_path, *DPO, "pref.loss=orpo")
    assert "reference" not in plan.ids() and "reference" not in plan.node("train").label


@pytest.mark.parametrize("overrides", [
    ("+recipe=dpo_qwen", "pref.loss=orpo", "pref.precompute_reference=true"),
    ("+recipe=dpo_qwen", "pref.precompute_reference=true", "model.shift_attn=true"),
    ("+recipe=dpo_qwen", "pref.precompute_reference=true", "data.streaming=true", "train.max_steps=2"),
    ("+recipe=demo", "pref.precompute_reference=false"),
])
def test_a_setting_that_cannot_take_effect_is_refused(overrides):
    assert "pref.precompute_reference" in _problems(*overrides, "model=tiny")
