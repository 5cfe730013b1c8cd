"""The predict and evaluate stages through the real CLI: a short LoRA SFT of the tiny model on the bundled
task, merged and exported, then predict on the bundled held-out split (demo_sft_eval) and evaluate it;
the sweep objective is a predict metric; predictions reproduce in-process; a second run is cached and only
predict re-runs when a generate setting changes; Chinese held-out data; token accuracy of a base model.

``trained_store`` (also used by test_chat.py and test_serve.py) trains once per test session into one store
(shared by the xdist workers).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def quick(root: Path) -> list[str]:
    """The overrides of the shared trained run (chat and serve use the same ones to find it in the store)."""
    return ["+recipe=demo", "data.dataset=demo_sft", "data.eval_dataset=demo_sft_eval",
            "run.sample=false", "train.max_steps=8", "train.eval_strategy=no", "train.save_steps=100",
            "train.do_eval=true", "train.do_predict=true", "train.predict_with_generate=true", "generate=greedy",
            "generate.max_new_tokens=24", f"export.dir={root / 'export'}"]


def env_for(root: Path) -> dict:
    return {**os.environ, "LLMPIPE_CACHE": str(root / "store"), "PYTHONUNBUFFERED": "1"}


def cli(root: Path, *args: str, module: str = "llmpipe", check: bool = True, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    """``python -m module args`` in ``cwd`` (default ``root``) with the store of ``root``."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or root, env=env_for(root),
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
    return proc


def trained_store(tmp_path_factory) -> Path:
    """A folder with a store holding the quick run (trained, merged, exported, predicted, evaluated). Under
    pytest-xdist the workers share it: the first trains it under a file lock, the others find it done."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "llmpipe-infer"
    root.mkdir(exist_ok=True)
    with FileLock(f"{root}.lock"):
        if not (root / "trained.lock.yaml").exists():
            cli(root, *quick(root), "run.objective=predict_exact_match")
            locks = sorted((root / "outputs").rglob("llmpipe.lock.yaml"), key=lambda p: p.stat().st_mtime)
            (root / "trained.lock.yaml").write_text(locks[-1].read_text())
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = trained_store(tmp_path_factory)
    return root, yaml.safe_load((root / "trained.lock.yaml").read_text())


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def bundled(name: str) -> list[dict]:
    from llmpipe.resources import folder

    return json.loads((folder("data") / f"{name}.json").read_text(encoding="utf-8"))


def test_predict_writes_every_held_out_answer_with_metrics(run):
    from llmpipe.infer.metrics import score

    _, lock = run
    stage = lock["stages"]["predict"]
    out = Path(stage["output"])
    got = rows(out / "generated_predictions.jsonl")
    assert [r["label"] for r in got] == [r["output"] for r in bundled("demo_sft_eval")]
    assert all(r["prompt"].endswith("<|im_start|>assistant\n") for r in got)       # the chat template
    assert all("You are a helpful assistant." in r["prompt"] for r in got)          # its default system
    metrics = stage["metrics"]
    assert metrics == json.loads((out / "predict_results.json").read_text())
    again = score([r["predict"] for r in got], [r["label"] for r in got])
    assert {k: metrics[k] for k in again} == again
    assert metrics["predict_samples"] == 100 and metrics["predict_truncated_prompts"] == 0
    assert lock["objective"] == {"name": "predict_exact_match", "value": metrics["predict_exact_match"]}


def test_evaluate_reproduces_the_training_eval_loss(run):
    _, lock = run
    ev, tr = lock["stages"]["evaluate"]["metrics"], lock["stages"]["train"]["metrics"]
    assert ev["eval_samples"] == 100
    assert ev["eval_loss"] == pytest.approx(tr["eval_loss"], abs=1e-4)    # merged model vs the adapter model
    assert ev["eval_loss"] < tr["eval_loss_initial"]                         # it did train
    assert ev["eval_perplexity"] == pytest.approx(math.exp(ev["eval_loss"]))


def test_greedy_predictions_reproduce_in_process(run):
    """The predict stage's answers are what the backend generates for those prompts, every time."""
    from llmpipe.pipeline.preflight import validate
    from llmpipe.infer.backends import load_prompter, open_backend
    from llmpipe.infer.generation import from_config
    from llmpipe.infer.model_ref import ModelRef
    from llmpipe.config.compose import compose

    root, lock = run
    obj = validate(compose(quick(root)))[0].obj
    model_dir = Path(lock["stages"]["merge"]["output"]) / "model"
    load_dir = Path(lock["stages"]["load"]["output"])
    ref = ModelRef(str(model_dir), str(load_dir / "tokenizer"))
    prompter = load_prompter(ref.tokenizer, obj)
    backend = open_backend(obj, ref, prompter)
    got = rows(Path(lock["stages"]["predict"]["output"]) / "generated_predictions.jsonl")[:6]
    prompts = [prompter.tokenizer(r["prompt"], add_special_tokens=False)["input_ids"] for r in got]
    params = from_config(obj, for_eval=True)
    first = [c.text for c in backend.generate(prompts, params, batch_size=3)]
    second = [c.text for c in backend.generate(prompts[::-1], params, batch_size=2)][::-1]
    assert first == second == [r["predict"] for r in got]


def plan_status(root: Path, *overrides: str) -> dict[str, str]:
    proc = cli(root, "plan", "--json", *overrides, module="llmpipe.tools.cli")
    return {k: v["status"] for k, v in json.loads(proc.stdout)["stages"].items()}


def test_predict_is_cached_and_reruns_alone_when_generation_changes(run):
    root, _ = run
    status = plan_status(root, *quick(root))
    assert {k: v for k, v in status.items() if k != "export"} == {k: "cached" for k in status if k != "export"}
    changed = plan_status(root, *quick(root), "generate.max_new_tokens=16")
    assert changed["predict"] == "run" and changed["train"] == changed["evaluate"] == "cached"


def test_predict_on_chinese_held_out_data_without_training(run, tmp_path):
    proc = cli(run[0], "model=tiny", "data.dataset=demo_sft_zh", "data.eval_dataset=demo_sft_zh_eval",
               "data.max_samples=24", "train.do_predict=true", "train.predict_with_generate=true", "generate=greedy",
               "generate.max_new_tokens=16", "run.objective=predict_rouge-l", cwd=tmp_path)
    lock = yaml.safe_load(next((tmp_path / "outputs").rglob("llmpipe.lock.yaml")).read_text())
    assert list(lock["stages"]) == ["load", "predict"]
    got = rows(Path(lock["stages"]["predict"]["output"]) / "generated_predictions.jsonl")
    assert [r["label"] for r in got] == [r["output"] for r in bundled("demo_sft_zh_eval")[:24]]
    metrics = lock["stages"]["predict"]["metrics"]
    assert metrics["predict_samples"] == 24 and all(0 <= metrics[k] <= 100 for k in metrics if "rouge" in k)
    assert lock["objective"]["name"] == "predict_rouge-l" and "predict_rouge-l" in proc.stdout


def test_token_accuracy_of_the_base_model(run, tmp_path):
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM

    cli(run[0], "model=tiny", "data.dataset=demo_sft", "data.eval_dataset=demo_sft_eval", "data.max_samples=16",
        "train.do_eval=true", "train.compute_accuracy=true", cwd=tmp_path)
    lock = yaml.safe_load(next((tmp_path / "outputs").rglob("llmpipe.lock.yaml")).read_text())
    assert list(lock["stages"]) == ["load", "evaluate"]
    metrics = lock["stages"]["evaluate"]["metrics"]
    load_dir = Path(lock["stages"]["load"]["output"])
    model = AutoModelForCausalLM.from_pretrained(json.loads((load_dir / "source.json").read_text())["model"]).eval()
    right = total = 0
    for row in load_from_disk(str(load_dir / "eval")):
        ids = torch.tensor([row["input_ids"]])
        with torch.no_grad():
            pred = model(input_ids=ids).logits[0, :-1].argmax(-1)
        labels = torch.tensor(row["labels"][1:])
        mask = labels != -100
        right += int((pred[mask] == labels[mask]).sum())
        total += int(mask.sum())
    assert metrics["eval_accuracy"] == pytest.approx(right / total, abs=1e-6)
    assert metrics["eval_samples"] == 16 and 0 < metrics["eval_accuracy"] < 1
