"""The reference stage (issue 22) through the real pipeline, in-process, on the built-in tiny model: per-step
training losses and rewards, and the held-out metrics, equal those of the inline reference within 1e-5 for the
sigmoid, ipo, hinge and kto_pair losses and for KTO; the stage is computed once and reused by a run with
another loss or beta (cached), and the train stage of a staged run loads no reference model."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

TOL = 1e-5
SHORT = ["model=tiny", "run.sample=false", "export.dir=null", "data.max_samples=12", "data.cutoff_len=96",
         "train.max_steps=3", "train.per_device_train_batch_size=4", "train.per_device_eval_batch_size=6",
         "train.learning_rate=5e-3", "train.warmup_steps=0", "train.logging_steps=1", "train.save_steps=1000",
         "train.eval_strategy=no"]
DPO = ["+recipe=dpo_qwen", *SHORT]
KTO = ["+recipe=kto_qwen", *SHORT]
# per-step values compared (TRL's names): the loss and the implicit rewards
KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "eval_loss", "eval_rewards/chosen",
        "eval_rewards/rejected", "eval_rewards/margins", "eval_reward_accuracy")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    shared = os.environ.get("LLMPIPE_BUILTIN_CACHE")
    if shared:   # the built-in model is built once per test session
        (Path(shared) / "models").mkdir(parents=True, exist_ok=True)
        (root / "models").symlink_to(Path(shared) / "models")
    return root


def pipeline(store: Path, *overrides: str):
    """(plan, result) of one in-process run."""
    from omegaconf import OmegaConf

    from llmpipe.config.compose import compose
    from llmpipe.pipeline.dag import build_plan, plan_problems
    from llmpipe.pipeline.fingerprint import compute_fingerprints
    from llmpipe.pipeline.lockfile import LockFile
    from llmpipe.pipeline.preflight import validate
    from llmpipe.pipeline.runner import Runner
    from llmpipe.pipeline.store import Store

    validated, problems = validate(compose(list(overrides)))
    problems = list(problems) or plan_problems(validated.cfg)
    assert not problems, [p.render() for p in problems]
    plan = build_plan(validated.cfg)
    compute_fingerprints(plan, store)
    lock = LockFile(None, OmegaConf.to_container(validated.cfg, resolve=True), [])
    return plan, Runner(plan, Store(store), lock).execute()


def history(result) -> list[dict]:
    """Per-step records of the train stage with the compared keys only."""
    rows = json.loads((result.outputs["train"] / "log_history.json").read_text())
    return [{k: r[k] for k in KEYS if k in r} | {"step": r.get("step")} for r in rows if set(KEYS) & set(r)]


def assert_same(inline: list[dict], staged: list[dict]) -> None:
    assert [r["step"] for r in inline] == [r["step"] for r in staged]
    compared = 0
    for a, b in zip(inline, staged):
        assert a.keys() == b.keys(), (a, b)
        for key in a.keys() - {"step"}:
            assert abs(a[key] - b[key]) <= TOL, (a["step"], key, a[key], b[key])
            compared += 1
    assert compared >= 12, inline


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "hinge", "kto_pair"])
def test_dpo_losses_equal_the_inline_reference(store, loss, monkeypatch):
    from llmpipe.training import reference

    inline_plan, inline = pipeline(store, *DPO, f"pref.loss={loss}", "pref.precompute_reference=false")
    assert "reference" not in inline_plan.ids()
    assert "reference inline: pref.precompute_reference=false" in inline_plan.node("train").label
    loaded = []
    original = reference.load_reference
    monkeypatch.setattr(reference, "load_reference", lambda *a, **k: loaded.append(1) or original(*a, **k))
    staged_plan, staged = pipeline(store, *DPO, f"pref.loss={loss}", "pref.precompute_reference=true")
    assert staged_plan.node("train").inputs["reference"] == "reference"
    # the reference stage loads the reference (or the base) itself; the train stage does not
    assert loaded == ([1] if staged.status["reference"] == "ran" else [])
    assert_same(history(inline), history(staged))
    before = staged.metrics["train"]
    assert before["eval_reward_accuracy_initial"] == 0.0   # the reference equals the untrained policy: no margin


def test_the_reference_is_computed_once_for_losses_and_betas(store):
    plans = [pipeline(store, *DPO, f"pref.loss={loss}", f"pref.beta={beta}", "lora.rank=4", "train.learning_rate=1e-3",
                      "pref.precompute_reference=true") for loss, beta in (("sigmoid", 0.3), ("ipo", 0.7))]
    assert plans[0][0].node("reference").fingerprint == plans[1][0].node("reference").fingerprint
    assert plans[0][0].node("train").fingerprint != plans[1][0].node("train").fingerprint
    assert plans[1][1].status["reference"] == "cached"
    ref = plans[0][1].outputs["reference"]
    index = json.loads((ref / "reference.json").read_text())
    assert index["columns"] == ["ref_chosen_logps", "ref_rejected_logps"] and index["rows"]["train"] > 0


def test_kto_equals_the_inline_reference(store):
    _, inline = pipeline(store, *KTO, "pref.precompute_reference=false")
    plan, staged = pipeline(store, *KTO, "pref.precompute_reference=true")
    assert "train.per_device_train_batch_size" in plan.node("reference").reads   # KL completions rotate per batch
    index = json.loads((staged.outputs["reference"] / "reference.json").read_text())
    assert index["columns"] == ["ref_KL_logps", "ref_logps"]
    assert_same(history(inline), history(staged))
    a, b = inline.metrics["train"], staged.metrics["train"]
    assert abs(a["eval_reward_accuracy"] - b["eval_reward_accuracy"]) <= TOL


@pytest.mark.parametrize("recipe", [DPO, KTO], ids=["dpo", "kto"])
def test_a_run_shorter_than_an_epoch_scores_only_the_rows_it_reads(store, recipe):
    """2 steps of 4 rows read 8 of the 12 rows: the stage scores those (the others are NaN, which training would
    refuse), and the losses and rewards still equal the inline reference's."""
    import math

    from datasets import load_from_disk

    short = [*recipe, "train.max_steps=2"]
    _, inline = pipeline(store, *short, "pref.precompute_reference=false")
    plan, staged = pipeline(store, *short, "pref.precompute_reference=true")
    assert "train.max_steps" in plan.node("reference").reads
    index = json.loads((staged.outputs["reference"] / "reference.json").read_text())
    assert index["rows"]["train"] == 8 and index["of"]["train"] == 12 and index["train_steps"] == 2, index
    cols = load_from_disk(str(staged.outputs["reference"] / "logps" / "train"))
    first = cols[cols.column_names[0]]
    assert sum(math.isnan(v) for v in first) == 4
    assert_same(history(inline), history(staged))
