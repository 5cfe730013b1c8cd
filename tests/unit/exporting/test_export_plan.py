"""The export part of the plan (no torch): which stages exist, what each one's fingerprint depends on,
export without training, the bits/calibration checks, and the overrides ``llmpipe-tools export`` builds."""
from __future__ import annotations

import argparse
import json

import pytest

from llmpipe.pipeline.preflight import validate
from llmpipe.pipeline.dag import build_plan
from llmpipe.pipeline.fingerprint import compute_fingerprints

EXPORT = ["data.dataset=demo_sft", "export.dir=/tmp/llmpipe-export-plan-test"]
Q4 = ["export.quantization_bit=4", "export.quantization_dataset=demo_pt"]


@pytest.fixture
def plan_of(hydra_compose, tmp_path):
    def _plan(*overrides):
        validated, problems = validate(hydra_compose(*overrides))
        assert not problems, [p.render() for p in problems]
        plan = build_plan(validated.cfg)
        compute_fingerprints(plan, tmp_path / "cache")
        return plan
    return _plan


def test_full_chain_with_quantize_and_push(plan_of):
    plan = plan_of(*EXPORT, "train.do_train=true", *Q4, "export.push_to=/tmp/llmpipe-remote.git")
    assert plan.ids() == ["load", "adapt", "train", "merge", "quantize", "export", "push"]
    assert plan.node("quantize").inputs == {"model": "merge", "load": "load"}
    assert plan.node("export").inputs == {"model": "quantize", "load": "load", "train": "train", "merge": "merge"}
    assert plan.node("push").inputs == {"export": "export"}


def test_export_without_training(plan_of, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    plan = plan_of(*EXPORT, "train.do_train=false", f"model.adapter_name_or_path={adapter}")
    assert plan.ids() == ["load", "merge", "export"]
    assert plan.node("merge").inputs == {"load": "load"}
    assert plan_of(*EXPORT, "train.do_train=false").ids() == ["load", "export"]
    assert plan_of(*EXPORT, "train.do_train=false", *Q4).ids() == ["load", "quantize", "export"]
    assert plan_of(*EXPORT, "train.do_train=true", "train.finetuning_type=full").ids() == ["load", "train", "export"]


def test_changing_only_the_hub_id_changes_only_push(plan_of):
    base = [*EXPORT, "train.do_train=true", *Q4]
    a = plan_of(*base, "export.hub_model_id=me/first")
    b = plan_of(*base, "export.hub_model_id=me/second")
    changed = [n for n in a.ids() if a.node(n).fingerprint != b.node(n).fingerprint]
    assert changed == ["push"]
    c = plan_of(*base, "export.hub_model_id=me/first", "export.quantization_nsamples=64")
    changed = [n for n in a.ids() if a.node(n).fingerprint != c.node(n).fingerprint]
    assert changed == ["quantize", "export", "push"]
    d = plan_of(*base, "export.hub_model_id=me/first", "export.legacy_format=true")
    assert [n for n in a.ids() if a.node(n).fingerprint != d.node(n).fingerprint] == ["export", "push"]


@pytest.mark.parametrize("bits", [1, 5, 16])
def test_bits_outside_the_gptq_set_fail_preflight(hydra_compose, bits):
    _, problems = validate(hydra_compose(*EXPORT, f"export.quantization_bit={bits}", "export.quantization_dataset=demo_pt"))
    mine = [p for p in problems if p.key == "export.quantization_bit"]
    assert mine and all(str(v) in mine[0].render() for v in (2, 3, 4, 8)), [p.render() for p in problems]


def test_missing_and_unregistered_calibration_data_fail_preflight(hydra_compose, tmp_path):
    for value in (None, str(tmp_path / "nope.json"), "not_a_registered_name"):
        extra = [f"export.quantization_dataset={value}"] if value else []
        _, problems = validate(hydra_compose(*EXPORT, "export.quantization_bit=4", *extra))
        assert [p for p in problems if p.key == "export.quantization_dataset"], value


# ------------------------------------------------------------------------------- llmpipe-tools export
def _args(*argv):
    from llmpipe.tools import export_cmd

    p = argparse.ArgumentParser()
    export_cmd.setup(p)
    return export_cmd.overrides(p.parse_args(list(argv)))


def test_tool_builds_the_pipeline_overrides(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b,2"
    for d in (a, b):
        d.mkdir()
        (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
    out = _args(str(a), str(b), "-o", str(tmp_path / "out"), "--bits", "4", "--calibration", "demo_pt", "--legacy",
                "--push-to", str(tmp_path / "r.git"), "--set", "infer.dtype=float32")
    assert out[:3] == ["model.name_or_path=org/base", "train.do_train=false", f"export.dir={tmp_path / 'out'}"]
    assert f"model.adapter_name_or_path='{a},{b}'" in out
    for item in ("export.quantization_bit=4", "export.quantization_dataset=demo_pt", "export.legacy_format=true",
                 f"export.push_to={tmp_path / 'r.git'}", "infer.dtype=float32"):
        assert item in out
    assert _args("--model", "builtin:tiny", "-o", "x")[:2] == ["model.name_or_path=builtin:tiny", "train.do_train=false"]


def test_tool_refuses_tokens_as_arguments_and_needs_a_base():
    with pytest.raises(SystemExit, match="HF_TOKEN"):
        _args("--model", "m/x", "-o", "x", "--set", "model.hf_hub_token=hf_abc")
    with pytest.raises(SystemExit, match="--model"):
        _args("-o", "x")


def test_tool_says_what_is_wrong_with_the_adapter_argument(tmp_path, monkeypatch):
    """A missing path or a folder that is not an adapter used to be reported as 'give --model'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"model is not a LoRA adapter folder \(no adapter_config.json\)"):
        _args(str(tmp_path / "model"), "-o", "x")
    with pytest.raises(SystemExit, match=r"adapter .*nothere is not a folder \(cwd: "):
        _args(str(tmp_path / "nothere"), "-o", "x")
    with pytest.raises(SystemExit, match=r"org/adapter is not a local folder; .*give its base model with --model"):
        _args("org/adapter", "-o", "x")
    (tmp_path / "nobase").mkdir()
    (tmp_path / "nobase" / "adapter_config.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"records no base model"):
        _args(str(tmp_path / "nobase"), "-o", "x")
