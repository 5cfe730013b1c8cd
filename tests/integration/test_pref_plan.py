"""Chained preference pipelines as plans (no torch): sft -> dpo and rm -> ppo, what each step inherits, the
reward-model step reference, reuse of the first step across sweeps of the second, and the pre-flight errors."""
from __future__ import annotations

import pytest

from llmpipe.config.compose import compose
from llmpipe.pipeline.preflight import validate
from llmpipe.pipeline.dag import build_plan, chain_configs, plan_problems
from llmpipe.pipeline.fingerprint import compute_fingerprints


def _plan(tmp_path, *overrides):
    validated, problems = validate(compose(list(overrides)))
    assert not problems, problems
    assert not plan_problems(validated.cfg), plan_problems(validated.cfg)
    plan = build_plan(validated.cfg)
    compute_fingerprints(plan, tmp_path)
    return plan


def _problems(*overrides):
    validated, problems = validate(compose(list(overrides)))
    return problems or plan_problems(validated.cfg)


def test_rm_then_ppo_wires_the_reward_model_in(tmp_path):
    plan = _plan(tmp_path, "+recipe=ppo_qwen", "model=tiny")
    assert plan.ids() == ["load.rm", "adapt.rm", "train.rm", "load", "adapt", "train"]
    train = plan.node("train")
    assert train.inputs["reward"] == "train.rm"
    assert "base" not in plan.node("load").inputs          # the policy starts from the base, not the reward model
    assert not [n for n in plan.nodes if n.kind.name == "merge"]


def test_sweeping_ppo_reuses_the_reward_model(tmp_path):
    a = _plan(tmp_path, "+recipe=ppo_qwen", "model=tiny", "ppo.target=1")
    b = _plan(tmp_path, "+recipe=ppo_qwen", "model=tiny", "ppo.target=6")
    assert a.node("train.rm").fingerprint == b.node("train.rm").fingerprint
    assert a.node("train").fingerprint != b.node("train").fingerprint


def test_ppo_training_depends_on_the_sampling_settings(tmp_path):
    a = _plan(tmp_path, "+recipe=ppo_qwen", "model=tiny", "generate.max_new_tokens=16")
    b = _plan(tmp_path, "+recipe=ppo_qwen", "model=tiny", "generate.max_new_tokens=32")
    assert a.node("train").fingerprint != b.node("train").fingerprint
    assert a.node("train.rm").fingerprint == b.node("train.rm").fingerprint   # the rm step samples nothing


def test_sweeping_dpo_reuses_the_sft_step(tmp_path):
    a = _plan(tmp_path, "+recipe=sft_dpo_qwen", "model=tiny", "pref.beta=0.05")
    b = _plan(tmp_path, "+recipe=sft_dpo_qwen", "model=tiny", "pref.beta=0.5")
    assert [n.id for n in a.nodes] == ["load.sft", "adapt.sft", "train.sft", "merge.sft", "load", "adapt",
                                       "reference", "train"]
    assert a.node("load").inputs == {"base": "merge.sft"}
    for node in ("train.sft", "merge.sft", "load", "reference"):   # the reference log-probs do not depend on beta
        assert a.node(node).fingerprint == b.node(node).fingerprint, node
    assert a.node("train").fingerprint != b.node("train").fingerprint


def test_steps_do_not_inherit_families_their_stage_never_reads():
    cfg = compose(["+recipe=sft_dpo_qwen", "model=tiny", "pref.beta=0.5", "pref.loss=ipo"])
    (_, sft), (_, dpo) = chain_configs(cfg)
    assert sft.pref.beta == 0.1 and sft.pref.loss == "sigmoid"
    assert dpo.pref.beta == 0.5 and dpo.pref.loss == "ipo"


@pytest.mark.parametrize("overrides, key, words", [
    (["ppo.reward_model=step:nope"], "ppo.reward_model", "names no earlier step"),
    (["++pipeline.before.rm.train.stage=sft"], "ppo.reward_model", "not a reward model"),
    (["++pipeline.before.rm.train.finetuning_type=full"], "ppo.reward_model_type", "full reward model"),
    (["ppo.reward_model=step:rm", "ppo.reward_model_type=api"], "ppo.reward_model", "URL"),
])
def test_bad_reward_step_references(overrides, key, words):
    problems = _problems("+recipe=ppo_qwen", "model=tiny", *overrides)
    assert any(key in p.key and words in p.message for p in problems), problems


def test_unused_reward_model_step_is_an_error():
    problems = _problems("+recipe=ppo_qwen", "model=tiny", "ppo.reward_model=llmpipe-test/rm")
    assert any(p.key == "pipeline.before.rm" and "no later step uses" in p.message for p in problems), problems


@pytest.mark.parametrize("overrides, key", [
    (["train.stage=ppo", "data.dataset=demo_sft"], "ppo.reward_model"),                        # no reward model
    (["train.stage=dpo", "data.dataset=demo_sft"], "data.dataset"),                            # not pairwise data
    (["train.stage=sft", "data.dataset=demo_pref"], "data.dataset"),                           # pairwise for sft
    (["train.stage=kto", "data.dataset=demo_pref"], "data.dataset"),
    (["train.stage=dpo", "data.dataset=demo_pref", "pref.loss=orpo", "pref.ftx=0.5"], "pref.ftx"),
    (["train.stage=dpo", "data.dataset=demo_pref", "pref.ref_model_quantization_bit=4"], "pref.ref_model_quantization_bit"),
    (["train.stage=rm", "data.dataset=demo_pref", "export.dir=exports/x"], "export.dir"),
    (["train.stage=dpo", "data.dataset=demo_pref", "pref.loss=bogus"], "pref.loss"),
])
def test_bad_preference_configs_fail_preflight(overrides, key):
    problems = _problems("model=tiny", "train.do_train=true", *overrides)
    assert any(p.key == key for p in problems), problems


def test_every_pref_loss_runs_on_the_installed_trl():
    """pref.loss choices = what the dpo stage runs; every loss passed to TRL by name is one TRL implements."""
    import inspect

    pytest.importorskip("trl")
    from trl import DPOTrainer

    from llmpipe.config.families.pref import LOSSES
    from llmpipe.training.preference import DPO_LOSSES
    from llmpipe.training.preference import LOSSES as RUNS

    assert set(LOSSES) == set(RUNS)
    source = inspect.getsource(DPOTrainer._compute_loss)
    missing = [loss for loss in DPO_LOSSES if f'loss_type == "{loss}"' not in source]
    assert not missing, f"TRL no longer implements {missing}"
