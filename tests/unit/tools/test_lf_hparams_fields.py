"""Every user-settable field of LLaMA-Factory's argument dataclasses (v0 hparams/ and v1 config/, listed in
tests/fixtures/lf/hparams_fields.txt with the commit they were read at) has an llmpipe answer: a parameter, a
translation, or a refusal with its reason, and ``llmpipe-tools explain`` shows it. A field that loses its
mapping, or a newer LLaMA-Factory field added to the list, fails here until it has one."""
from __future__ import annotations

from pathlib import Path

from llmpipe.tools import import_lf_v1
from llmpipe.tools.explain import explain_one
from llmpipe.tools.import_lf_keys import classify

FIELDS = Path(__file__).resolve().parents[2] / "fixtures" / "lf" / "hparams_fields.txt"
# the evaluation stage's flags (issue 16, the multiple-choice evaluation: the eval.* family)
EVALUATION = {"task", "task_dir", "n_shot", "lang", "save_dir", "batch_size"}


def _fields(v1: bool) -> list[str]:
    rows = [line.strip() for line in FIELDS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return [r.rsplit(".", 1)[1] for r in rows if r.startswith("v1/") == v1]


def test_fixture_names_its_commit_and_both_formats():
    head = FIELDS.read_text().splitlines()[0]
    assert len(head.split()[2].rstrip(":")) == 40
    assert len(_fields(False)) > 250 and len(_fields(True)) > 40


def test_every_v0_field_is_mapped_translated_or_refused():
    gaps = sorted(f for f in _fields(False) if classify(f) is None)
    assert gaps == []
    for name in ("use_kt", "tensor_model_parallel_size", "use_hyper_parallel", "sglang_config"):
        what, why = classify(name)
        assert what == "refused" and why


def test_evaluation_fields_are_mapped():
    assert [f for f in EVALUATION if classify(f) is None] == []


def test_every_v1_field_reaches_a_mapped_key():
    unknown = []
    for name in _fields(True):
        notes: list[str] = []
        errors: list[str] = []
        out = import_lf_v1.to_v0({name: None}, Path("config.yaml"), notes, errors)
        unknown += [k for k in out if not k.startswith("_") and "." not in k and classify(k) is None]
    assert unknown == []


def test_explain_shows_a_refusal_and_its_reason():
    lines, err = explain_one("use_kt")
    assert err is None and "refused" in lines[0] and "KTransformers" in lines[1]
    lines, err = explain_one("no_such_lf_key")
    assert lines == [] and err.startswith("unknown parameter")


def test_ray_keys_import_as_a_ray_launch():
    from llmpipe.config.flags import flag_table
    from llmpipe.tools.import_lf import convert

    conv = convert({"ray_num_workers": 4, "ray_run_name": "sft", "placement_strategy": "SPREAD",
                    "master_addr": "10.0.0.1", "ray_init_kwargs": {"address": "auto"}}, flag_table())
    assert conv.values["launch.kind"] == "ray" and conv.values["launch.ray_num_workers"] == 4
    assert conv.values["launch.ray_placement_strategy"] == "SPREAD" and "launch.master_addr" not in conv.values
    assert conv.values["launch.ray_init_kwargs"] == {"address": "auto"}
    assert any("USE_RAY" in n for n in conv.notes) and any("master_addr" in n for n in conv.notes)


def test_swanlab_keys_import_and_the_key_stays_out():
    from llmpipe.config.flags import flag_table
    from llmpipe.tools.import_lf import convert

    conv = convert({"use_swanlab": True, "report_to": "none", "swanlab_project": "p", "swanlab_mode": "cloud",
                    "swanlab_api_key": "sk-very-secret"}, flag_table())
    assert conv.values["train.report_to"] == ["swanlab"] and conv.values["train.swanlab_project"] == "p"
    assert conv.values["train.swanlab_mode"] == "cloud" and "train.swanlab_api_key" not in conv.values
    assert any("SWANLAB_API_KEY" in w for w in conv.warnings)
    assert "sk-very-secret" not in repr(conv.values) + repr(conv.notes)
