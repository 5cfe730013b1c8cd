"""Multiple-choice tasks (eval.task): LLaMA-Factory's on-disk layouts (MMLU's headerless CSVs, CMMLU's and
C-Eval's headed ones, extracted or zipped) read into the same questions as the bundled set; task names; what the
fingerprint sees of a task folder; the chat turns of a few-shot question in both wordings; the import of an LF
eval YAML. No torch."""
from __future__ import annotations

import json
import zipfile

import pytest

from llmpipe.data import mc_synthetic
from llmpipe.data.errors import DataError
from llmpipe.data.mc_prompt import conversation, shots
from llmpipe.data.mc_tasks import load_task, locate, parse_task, task_identity


def test_lf_layout_reads_as_the_bundled_set_and_is_fingerprinted_by_content(tmp_path):
    mc_synthetic.write_lf_layout(tmp_path)
    bundled, local = load_task("mc_demo_test", tmp_path / "none"), load_task("mc_demo_test", tmp_path)
    assert [(s.key, s.name, s.category) for s in local] == [("object_colours", "object colours", "Other"),
                                                          ("addition", "addition", "STEM")]
    assert [(s.dev, s.questions) for s in local] == [(s.dev, s.questions) for s in bundled]
    assert [len(s.questions) for s in load_task("mc_demo_validation", tmp_path)] == [16, 16]
    assert all({q.answer for q in s.questions} == {"A", "B", "C", "D"} for s in local)   # balanced: chance is 25 %
    before = task_identity("mc_demo_test", tmp_path)
    assert before.startswith("folder:") and task_identity("mc_demo_test", tmp_path / "none").startswith("bundled:")
    (tmp_path / "mc_demo" / "test" / "addition_test.csv").write_text("What is one plus one?,two,three,four,five,A\n")
    assert task_identity("mc_demo_test", tmp_path) != before
    assert len(load_task("mc_demo_test", tmp_path)[1].questions) == 1


def test_cmmlu_and_ceval_layouts_zipped_with_headers(tmp_path):
    root = tmp_path / "cm"
    root.mkdir()
    (root / "mapping.json").write_text(json.dumps({"agronomy": {"name": "农学", "category": "Other"}}))
    with zipfile.ZipFile(root / "cm.zip", "w") as z:   # CMMLU: an index column, Question ... Answer
        z.writestr("dev/agronomy.csv", ",Question,A,B,C,D,Answer\n0,问一,甲,乙,丙,丁,B\n")
        z.writestr("test/agronomy.csv", ",Question,A,B,C,D,Answer\n0,问二,甲,乙,丙,丁,c\n1,问三,甲,乙,,,A\n")
    (s,) = load_task("cm_test", tmp_path)
    assert (s.name, s.dev[0].question, s.dev[0].answer) == ("农学", "问一", "B")
    assert [q.answer for q in s.questions] == ["C", "A"] and [k for k, _ in s.questions[1].choices] == ["A", "B"]
    ce = tmp_path / "ce"
    for split in ("dev", "val", "test"):
        (ce / split).mkdir(parents=True)
        answer = "" if split == "test" else ",answer"
        row = "0,题,甲,乙,丙,丁" + ("" if split == "test" else ",D")
        (ce / split / f"law_{split}.csv").write_text(f"id,question,A,B,C,D{answer}\n{row}\n", encoding="utf-8")
    (ce / "mapping.json").write_text(json.dumps({"law": {"name": "法学", "category": "Humanities"}}))
    assert load_task("ce_validation", tmp_path)[0].questions[0].answer == "D"
    with pytest.raises(DataError, match="without answers.*ce_validation"):   # C-Eval keeps its test answers private
        load_task("ce_test", tmp_path)


@pytest.mark.parametrize("task", ["mmlu", "mc_demo_dev", "_test"])
def test_task_names_are_name_and_split(task):
    with pytest.raises(ValueError, match="<name>_<split>"):
        parse_task(task)


def test_unknown_task_names_the_folder_and_the_bundled_set(tmp_path):
    with pytest.raises(ValueError, match=r"no task folder .*mmlu with a mapping.json.*not bundled \(mc_demo\)"):
        locate("mmlu_test", tmp_path)
    assert locate("mc_demo_validation", tmp_path) == ("mc_demo", "validation", None)


def test_few_shot_turns_and_wording():
    subject = load_task("mc_demo_test", "none")[0]
    q = subject.questions[0]
    zero = conversation(subject, q, shots(subject, 0, 0, 42), "en")
    assert zero == [{"role": "user", "content": "The following are multiple choice questions (with answers) about"
                     f" object colours.\n\n{q.question}\nA. red\nB. blue\nC. green\nD. yellow\nAnswer:"}]
    two = conversation(subject, q, shots(subject, 0, 2, 42), "en")
    assert [m["role"] for m in two] == ["user", "assistant", "user", "assistant", "user"]
    assert two[0]["content"].startswith("The following are") and two[-1]["content"].startswith(q.question)
    assert shots(subject, 0, 2, 42) == shots(subject, 0, 2, 42) != shots(subject, 0, 2, 7)   # seeded per question
    assert len(shots(subject, 0, 50, 42)) == 5   # capped at the dev pool, as LLaMA-Factory does
    zh = conversation(subject, q, [], "zh")[0]["content"]
    assert zh.startswith("以下是中国关于object colours考试的单项选择题") and zh.endswith("\n答案：")


def test_import_of_an_lf_eval_yaml():
    from llmpipe.config.flags import flag_table
    from llmpipe.tools.import_lf import convert

    conv = convert({"model_name_or_path": "builtin:tiny", "template": "fewshot", "task": "mmlu_test",
                    "task_dir": "evaluation", "lang": "zh", "n_shot": 3, "batch_size": 2, "seed": 7,
                    "save_dir": "saves/eval", "download_mode": "reuse_dataset_if_exists"}, flag_table())
    assert {k: v for k, v in conv.values.items() if k.startswith(("eval.", "train.seed"))} == {
        "eval.task": "mmlu_test", "eval.task_dir": "evaluation", "eval.lang": "zh", "eval.n_shot": 3,
        "eval.batch_size": 2, "eval.save_dir": "saves/eval", "eval.download_mode": "reuse_dataset_if_exists",
        "train.seed": 7}
