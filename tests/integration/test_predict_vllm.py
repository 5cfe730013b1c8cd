"""The vLLM backend for real (CUDA GPU + the vllm package; skipped elsewhere): the tiny model's trained LoRA
adapter served through vLLM's LoRA support gives the same greedy answers as the Hugging Face backend,
batch and streamed, and the predict stage runs on it through the CLI."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def needs_vllm():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("the vllm package is not installed")


VLLM = ["infer=vllm", "infer.vllm_maxlen=512", "infer.vllm_gpu_util=0.3", "infer.vllm_enforce_eager=true"]


def test_vllm_lora_answers_match_huggingface(tmp_path_factory):
    from llmpipe.pipeline.preflight import validate
    from llmpipe.infer.backends import load_prompter, open_backend
    from llmpipe.infer.generation import from_config
    from llmpipe.infer.model_ref import ModelRef
    from llmpipe.config.compose import compose
    from test_predict import quick, rows, trained_store

    root = trained_store(tmp_path_factory)
    lock = yaml.safe_load((root / "trained.lock.yaml").read_text())
    load_dir, train_dir = Path(lock["stages"]["load"]["output"]), Path(lock["stages"]["train"]["output"])
    base = json.loads((load_dir / "source.json").read_text())["model"]
    ref = ModelRef(base, str(train_dir / "adapter"), (str(train_dir / "adapter"),))
    got = rows(Path(lock["stages"]["predict"]["output"]) / "generated_predictions.jsonl")[:32]
    answers = {}
    for backend_overrides in ([], VLLM):
        overrides = quick(root) + ["generate.max_new_tokens=24", "infer.dtype=float16"] + backend_overrides
        obj = validate(compose(overrides))[0].obj
        prompter = load_prompter(ref.tokenizer, obj)
        backend = open_backend(obj, ref, prompter)
        prompts = [prompter.tokenizer(r["prompt"], add_special_tokens=False)["input_ids"] for r in got]
        params = from_config(obj, for_eval=True)
        answers[backend.name] = [c.text for c in backend.generate(prompts, params)]
        if backend.name == "vllm":
            streamed = backend.stream(prompts[0], params)
            assert "".join(streamed) == answers["vllm"][0] and streamed.result.finish_reason in ("stop", "length")
        backend.close()
    same = sum(a == b for a, b in zip(answers["huggingface"], answers["vllm"]))
    assert same >= 0.8 * len(got), list(zip(answers["huggingface"], answers["vllm"]))


def test_predict_stage_on_vllm(tmp_path_factory, tmp_path):
    from test_predict import cli, quick, trained_store

    root = trained_store(tmp_path_factory)
    cli(root, *quick(root), *VLLM, cwd=tmp_path)
    lock = yaml.safe_load(next((tmp_path / "outputs").rglob("llmpipe.lock.yaml")).read_text())
    assert lock["stages"]["train"]["status"] == "cached" and lock["stages"]["predict"]["status"] == "ran"
    assert lock["stages"]["predict"]["metrics"]["predict_samples"] == 100
