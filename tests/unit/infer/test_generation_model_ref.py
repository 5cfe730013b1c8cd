"""Which model chat/serve/predict use: the plan's final model found in the store (export, then merge, then
train: model/ or adapter/ on its base), else the base model; and the predict/evaluate nodes of the plan.
Fake store entries, no torch."""
from __future__ import annotations

import json

import pytest

from llmpipe.infer.model_ref import ModelRef, base_model, final_model, find_in_store, from_stage_inputs
from llmpipe.pipeline.session import Session
from llmpipe.pipeline.store import MARKER
from llmpipe.config.families.export import EXPORT_MARKER as EXPORTED


@pytest.fixture
def planned(hydra_compose, tmp_path):
    def make(*overrides):
        session = Session.open(hydra_compose("+recipe=demo", f"run.cache_root={tmp_path / 'store'}", *overrides),
                               inference=True)
        return session.validated, session.plan, session.store
    return make


def publish(store, plan, node_id: str, *folders: str, source: str | None = None):
    node = plan.node(node_id)
    path = store.entry(node.kind.name, node.fingerprint).path
    for f in folders:
        (path / f).mkdir(parents=True, exist_ok=True)
    if source:
        (path / "source.json").write_text(json.dumps({"model": source}))
    (path / MARKER).write_text("ok")
    return path


def test_nothing_in_the_store_means_the_base_model(planned):
    validated, plan, store = planned("export.dir=null")
    assert find_in_store(plan, store) is None


def test_a_trained_adapter_is_served_on_its_base(planned):
    _, plan, store = planned("export.dir=null")
    assert plan.ids() == ["load", "adapt", "train"]
    publish(store, plan, "load", "tokenizer", source="/base/model")
    train = publish(store, plan, "train", "adapter")
    ref = find_in_store(plan, store)
    assert ref == ModelRef("/base/model", str(train / "adapter"), (str(train / "adapter"),), ref.origin, True)
    assert ref.origin.startswith("trained (train ")


def test_an_incomplete_entry_is_not_used(planned):
    _, plan, store = planned("export.dir=null")
    publish(store, plan, "load", "tokenizer", source="/base/model")
    node = plan.node("train")
    (store.entry("train", node.fingerprint).path / "adapter").mkdir(parents=True)   # no COMPLETE marker
    assert find_in_store(plan, store) is None


def test_the_export_wins_over_the_merged_model_and_only_when_it_is_this_export(planned, tmp_path):
    dest = tmp_path / "exported"
    _, plan, store = planned(f"export.dir={dest}")
    assert plan.ids()[-2:] == ["merge", "export"]
    merged = publish(store, plan, "merge", "model")
    assert find_in_store(plan, store).model == str(merged / "model")
    dest.mkdir()
    (dest / EXPORTED).write_text(json.dumps({"fingerprint": "something else"}))
    assert find_in_store(plan, store).model == str(merged / "model")
    (dest / EXPORTED).write_text(json.dumps({"fingerprint": plan.node("export").fingerprint}))
    ref = find_in_store(plan, store)
    assert ref.model == str(dest) and ref.tokenizer == str(dest) and not ref.adapters


def test_final_model_of_a_finished_run(planned, tmp_path):
    _, plan, store = planned("export.dir=null")
    load = publish(store, plan, "load", "tokenizer", source="/base/model")
    train = publish(store, plan, "train", "adapter")
    outputs = {"load": load, "adapt": tmp_path, "train": train}
    assert final_model(plan, outputs).adapters == (str(train / "adapter"),)


def test_stage_inputs_use_the_load_tokenizer(tmp_path, planned):
    (tmp_path / "a1").mkdir()
    (tmp_path / "a1" / "adapter_config.json").write_text("{}")
    validated, _, _ = planned("export.dir=null", f"model.adapter_name_or_path={tmp_path / 'a1'}")
    (tmp_path / "load").mkdir()
    (tmp_path / "load" / "source.json").write_text(json.dumps({"model": "/base"}))
    (tmp_path / "merge" / "model").mkdir(parents=True)
    ref = from_stage_inputs(validated.obj, tmp_path / "load", tmp_path / "merge")
    assert (ref.model, ref.tokenizer, ref.adapters) == (str(tmp_path / "merge" / "model"),
                                                        str(tmp_path / "load" / "tokenizer"), ())
    base = from_stage_inputs(validated.obj, tmp_path / "load", None)
    assert (base.model, base.adapters, base.trained) == ("/base", (str(tmp_path / "a1"),), False)


def test_base_model_names_a_model_folder_or_fails_clearly(planned, tmp_path):
    from llmpipe.models.loading import ModelSourceError

    validated, _, _ = planned("export.dir=null", f"model.name_or_path={tmp_path}")
    with pytest.raises(ModelSourceError, match="config.json"):
        base_model(validated.obj, tmp_path)


@pytest.mark.parametrize("overrides,nodes,model_input", [
    (["train.do_eval=true"], ["evaluate"], "train"),
    (["train.do_predict=true", "train.predict_with_generate=true"], ["predict"], "train"),
    (["train.do_eval=true", "train.do_predict=true", "train.predict_with_generate=true", "export.dir=out"],
     ["evaluate", "predict"], "merge"),
    (["train.do_train=false", "train.do_eval=true"], ["evaluate"], None),
])
def test_evaluate_and_predict_nodes(planned, overrides, nodes, model_input):
    _, plan, _ = planned(*(["export.dir=null"] + overrides))
    found = [n for n in plan.nodes if n.kind.name in ("evaluate", "predict")]
    assert [n.id for n in found] == nodes
    for n in found:
        assert n.inputs.get("model") == model_input and n.inputs["load"] == "load"


def test_predict_reads_generation_but_not_training_settings(planned):
    _, plan, _ = planned("export.dir=null", "train.do_predict=true", "train.predict_with_generate=true")
    _, plan2, _ = planned("export.dir=null", "train.do_predict=true", "train.predict_with_generate=true",
                          "generate.max_new_tokens=64")
    fp = {n.id: n.fingerprint for n in plan.nodes}
    fp2 = {n.id: n.fingerprint for n in plan2.nodes}
    assert fp["train"] == fp2["train"] and fp["predict"] != fp2["predict"]
