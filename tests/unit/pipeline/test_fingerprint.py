"""Fingerprints: a stage's fingerprint moves exactly when something it reads (or anything upstream) moves."""
import pytest

from llmpipe.config.compose import compose
from llmpipe.pipeline import fingerprint
from llmpipe.pipeline.dag import build_plan
from llmpipe.pipeline.fingerprint import read_paths

BASE = ["model=tiny", "data.dataset=demo_sft", "data.eval_dataset=demo_sft_eval", "train.do_train=true",
        "export.dir=/tmp/llmpipe-fp-test-export"]


@pytest.fixture(autouse=True)
def _fixed_data_identity(monkeypatch):
    monkeypatch.setattr(fingerprint, "data_identities", lambda cfg: {"data:x": "fixed"})


def fps(tmp_path, *extra):
    plan = build_plan(compose(BASE + list(extra)))
    fingerprint.compute_fingerprints(plan, tmp_path)
    return {n.id: n.fingerprint for n in plan.nodes}


def test_plan_shape_lora_export(tmp_path):
    assert list(fps(tmp_path)) == ["load", "adapt", "train", "merge", "export"]


def test_unread_key_leaves_fingerprints_alone(tmp_path):
    a = fps(tmp_path)
    # volatile / unrelated keys: logging, run control, generation settings, export destination for upstream
    b = fps(tmp_path, "train.logging_steps=7", "run.objective=train_loss", "generate.temperature=0.5",
            "train.report_to=none", "run.dry_run=true")
    assert a == b


def test_read_key_changes_stage_and_downstream_only(tmp_path):
    a = fps(tmp_path)
    b = fps(tmp_path, "lora.rank=4")
    assert a["load"] == b["load"]
    for node in ("adapt", "train", "merge"):
        assert a[node] != b[node], node


def test_training_key_does_not_touch_load_or_adapt(tmp_path):
    a = fps(tmp_path)
    b = fps(tmp_path, "train.learning_rate=0.01")
    assert a["load"] == b["load"] and a["adapt"] == b["adapt"]
    assert a["train"] != b["train"] and a["merge"] != b["merge"]


def test_data_key_changes_everything(tmp_path):
    a = fps(tmp_path)
    b = fps(tmp_path, "data.cutoff_len=128")
    assert all(a[k] != b[k] for k in ("load", "adapt", "train", "merge"))


def test_every_declared_read_is_a_real_parameter():
    from llmpipe.stages import KINDS

    for kind in KINDS.values():
        for r in kind.reads:
            assert read_paths([r]), f"{kind.name} reads {r}, which matches no parameter"


def test_volatile_parameters_are_never_read():
    from llmpipe.config.flags import flag_table
    from llmpipe.stages import KINDS

    volatile = {p.path for p in flag_table().params() if p.meta.volatile}
    for kind in KINDS.values():
        assert not volatile & set(read_paths(kind.reads)), kind.name


def test_chained_steps_get_their_own_nodes(tmp_path):
    plan = build_plan(compose(BASE + ["+pipeline.before.warmup={train.stage: sft, data.cutoff_len: 64}"]))
    assert plan.ids()[:4] == ["load.warmup", "adapt.warmup", "train.warmup", "merge.warmup"]
    assert plan.node("load").inputs == {"base": "merge.warmup"}
