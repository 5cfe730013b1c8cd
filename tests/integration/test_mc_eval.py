"""The mc_eval stage through the real CLI (issue 16, LLaMA-Factory's MMLU/CMMLU/C-Eval evaluation):
+recipe=eval_mc_demo trains the built-in tiny model on mc_demo_train and evaluates it on mc_demo's test split;
the results (per subject, category and average) are in the store and in eval.save_dir; the same questions put to
the untrained model score at chance; the prompt as rendered under the chat template changes with eval.n_shot and
eval.lang; a bad task, a bad lang and an existing save_dir stop in pre-flight with exit 2, writing nothing."""
from __future__ import annotations

import json

import pytest

from tests.integration.pref_support import cli, last_lock, stage_output

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("mc_eval")
    cli(root, root / "store", "+recipe=eval_mc_demo", f"eval.save_dir={root / 'results'}")
    lock = last_lock(root)
    return root, lock, json.loads((stage_output(lock, "mc_eval") / "results.json").read_text(encoding="utf-8"))


def test_results_per_subject_category_and_average(trained):
    root, lock, results = trained
    assert list(lock["stages"]) == ["load", "train", "mc_eval"]
    assert (results["task"], results["split"], results["n_shot"], results["lang"]) == ("mc_demo_test", "test", 0, "en")
    assert set(results["accuracy"]) == {"Average", "Other", "STEM"}
    subjects = results["subjects"]
    assert {k: (s["category"], s["questions"]) for k, s in subjects.items()} == {
        "object_colours": ("Other", 32), "addition": ("STEM", 32)}
    for key, s in subjects.items():
        answers = results["predictions"][key]
        assert len(answers) == 32 and set(answers.values()) <= {"A", "B", "C", "D"}
        assert s["accuracy"] == s["correct"] / 32 == results["accuracy"][s["category"]]
    assert results["accuracy"]["Average"] == sum(s["correct"] for s in subjects.values()) / 64
    out = stage_output(lock, "mc_eval")
    for name in ("results.json", "results.log"):   # eval.save_dir holds the store's copy
        assert (root / "results" / name).read_bytes() == (out / name).read_bytes()
    assert "Average" in (root / "results" / "results.log").read_text()
    assert results["first_prompts"]["addition"].endswith("\nAnswer:<|im_end|>\n<|im_start|>assistant\n")


def test_accuracy_moves_from_chance_to_clearly_above(trained):
    """The same 64 questions put to the untrained model score 25 % (one letter for all); trained, far above."""
    from llmpipe.infer.multiple_choice import evaluate, job_from_config, render

    _, lock, results = trained
    obj, prompter, model = _base(lock)
    before = evaluate(render(job_from_config(obj), prompter), model, prompter.tokenizer, 8, log=lambda _: None)
    assert before["accuracy"]["Average"] <= 0.35
    assert results["accuracy"]["Average"] >= before["accuracy"]["Average"] + 0.2, results["accuracy"]


def test_n_shot_and_lang_change_the_rendered_prompt(trained):
    from dataclasses import replace

    from llmpipe.infer.multiple_choice import job_from_config, render

    _, lock, results = trained
    obj, prompter, _ = _base(lock)

    def first(**eval_values):
        job = job_from_config(replace(obj, eval=replace(obj.eval, **eval_values)))
        return prompter.tokenizer.decode(render(job, prompter)[1].prompts[0])

    zero, two, zh = first(n_shot=0), first(n_shot=2), first(n_shot=2, lang="zh")
    assert zero == results["first_prompts"]["addition"]    # what the stage rendered
    assert zero.count("<|im_start|>user") == 1 and zero.count("Answer:") == 1
    assert two.count("<|im_start|>user") == 3 and two.count("<|im_start|>assistant") == 3 and two.count("Answer:") == 3
    assert "about addition.\n\n" in two.split("<|im_start|>user")[1]   # the subject line opens the first turn only
    assert "以下是中国关于addition考试的单项选择题" in zh and zh.count("\n答案：") == 3 and "Answer:" not in zh


def _base(lock):
    """The run's typed config, prompter (the load stage's tokenizer) and the untrained built-in model."""
    from hydra import compose

    from llmpipe.config.compose import hydra_context
    from llmpipe.config.typed import typed
    from llmpipe.infer.engine import load_prompter
    from llmpipe.infer.hf_backend import load_model
    from llmpipe.infer.model_ref import from_stage_inputs

    with hydra_context():
        cfg = compose("config", overrides=["model=tiny", "eval.task=mc_demo_test", "eval.n_shot=0"])
    obj = typed(cfg)
    ref = from_stage_inputs(obj, stage_output(lock, "load"), None)
    return obj, load_prompter(ref.tokenizer, obj), load_model(ref, obj)


@pytest.mark.parametrize("overrides, keys", [
    (["eval.lang=fr"], ["eval.lang"]),
    (["eval.task=mmlu_test", "eval.save_dir={used}"], ["eval.task", "eval.save_dir"]),
])
def test_preflight_refuses_with_exit_2_and_writes_nothing(tmp_path, overrides, keys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "results.json").write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    proc = cli(run, run / "store", "model=tiny", "eval.task=mc_demo_test",
               *(o.format(used=used) for o in overrides), check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    for key in keys:
        assert f"x {key} = " in proc.stdout + proc.stderr
    assert list(run.iterdir()) == [] and [p.name for p in used.iterdir()] == ["results.json"]
