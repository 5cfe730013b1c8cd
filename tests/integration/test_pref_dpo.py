"""DPO through the real CLI on the built-in tiny model and the bundled pairs: it learns (held-out reward accuracy
well above chance), the saved adapter reloads with the same preferences, the other losses of the family and
freeze/full fine-tuning run, and a reference model with another tokenizer is refused before training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from console_support import assert_quiet
from pref_support import cli, last_lock, stage_output

pytestmark = pytest.mark.slow

# Measured on the tiny model (CPU, train.seed 42 / 1 / 2): held-out reward accuracy 0 -> 0.83 / 0.80 / 0.81 after 40
# steps.
LEARN = ["+recipe=dpo_qwen", "model=tiny", "train.max_steps=40", "train.learning_rate=2e-3", "pref.beta=0.1",
         "train.eval_strategy=no", "train.warmup_steps=0", "data.cutoff_len=128", "train.save_steps=1000",
         "train.per_device_eval_batch_size=25", "train.logging_steps=20"]
MIN_ACCURACY = 0.7      # chance (a random ordering) is 0.5; the untrained policy scores 0 (ties)
QUICK = ["+recipe=dpo_qwen", "model=tiny", "train.max_steps=2", "data.max_samples=16", "train.eval_strategy=no",
         "data.cutoff_len=128", "train.save_steps=1000", "train.logging_steps=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory, cache):
    cwd = tmp_path_factory.mktemp("dpo")
    proc = cli(cwd, cache, *LEARN)
    return proc, last_lock(cwd)


@pytest.fixture(scope="module")
def dpo(dpo_run):
    return dpo_run[1]


def test_dpo_console_is_quiet(dpo_run):
    """No banner, no "Failed to load", no raw library lines on the console of a preference run."""
    assert_quiet(dpo_run[0])


def test_dpo_learns_the_heldout_preferences(dpo):
    m = dpo["stages"]["train"]["metrics"]
    assert m["eval_reward_accuracy_initial"] == 0.0
    assert m["eval_reward_accuracy"] >= MIN_ACCURACY, m
    assert m["eval_reward_margin"] > 0.1 and m["eval_reward_margin_initial"] == 0.0
    assert m["eval_loss"] < m["eval_loss_initial"] - 0.03
    assert m["eval_reward_accuracy"] == m["eval_rewards/accuracies"]
    assert dpo["objective"] == {"name": "eval_loss", "value": m["eval_loss"]}


def test_saved_adapter_reloads_with_the_same_preferences(dpo):
    """Base + the published adapter, reloaded here: its implicit rewards rank the held-out pairs as reported."""
    torch = pytest.importorskip("torch")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmpipe.data.loader import build_datasets
    from llmpipe.data.options import DataOptions

    base = json.loads((stage_output(dpo, "load") / "source.json").read_text())["model"]
    adapter = stage_output(dpo, "train") / "adapter"
    assert not (adapter / "ref").exists()           # TRL's reference copy is not part of the result
    tok = AutoTokenizer.from_pretrained(str(adapter))
    ref = AutoModelForCausalLM.from_pretrained(base).eval()
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter)).eval()
    opts = DataOptions(stage="dpo", dataset=("demo_pref_eval",), cutoff_len=128)
    pairs = build_datasets(opts, tok).train

    def logp(model, prompt, answer):
        text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(prompt + answer, tokenize=False)
        ids = tok(full, return_tensors="pt", add_special_tokens=False).input_ids
        n = len(tok(text, add_special_tokens=False).input_ids)
        with torch.no_grad():
            lp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        return lp[n - 1:].gather(-1, ids[0, n:, None]).sum().item()

    wins = [(logp(policy, r["prompt"], r["chosen"]) - logp(ref, r["prompt"], r["chosen"]))
            > (logp(policy, r["prompt"], r["rejected"]) - logp(ref, r["prompt"], r["rejected"])) for r in pairs]
    reported = dpo["stages"]["train"]["metrics"]["eval_reward_accuracy"]
    assert abs(sum(wins) / len(wins) - reported) <= 0.06, (sum(wins) / len(wins), reported)


def test_the_loss_family_runs(tmp_path, cache):
    """One process, one job per loss: TRL's ipo and hinge, llmpipe's kto_pair, ORPO and SimPO (reference-free)."""
    cli(tmp_path, cache, "-m", *QUICK, "pref.loss=ipo,hinge,kto_pair,orpo,simpo", "pref.beta=0.5")
    rows = {}
    for lock in tmp_path.rglob("llmpipe.lock.yaml"):
        data = yaml.safe_load(lock.read_text())
        rows[data["config"]["pref"]["loss"]] = data["stages"]["train"]["metrics"]
    assert set(rows) == {"ipo", "hinge", "kto_pair", "orpo", "simpo"}
    for loss, m in rows.items():
        assert 0.0 <= m["eval_reward_accuracy"] <= 1.0 and m["global_step"] == 2, (loss, m)
    assert "eval_log_odds_ratio" in rows["orpo"] and "eval_nll_loss" in rows["simpo"]
    assert rows["kto_pair"]["eval_loss_initial"] == pytest.approx(0.5, abs=1e-4)   # 1 - sigmoid(0)


def test_dpo_with_freeze_and_full_finetuning(tmp_path, cache):
    """One process, a job each (the reference is then a frozen copy of the base)."""
    cli(tmp_path, cache, "-m", *QUICK, "train.finetuning_type=freeze,full", "pref.beta=0.5", "train.learning_rate=1e-4")
    locks = [yaml.safe_load(p.read_text()) for p in tmp_path.rglob("llmpipe.lock.yaml")]
    assert sorted(lock["config"]["train"]["finetuning_type"] for lock in locks) == ["freeze", "full"]
    for lock in locks:
        out = stage_output(lock, "train")
        assert (out / "model" / "model.safetensors").is_file() and not (out / "adapter").exists()
        m = lock["stages"]["train"]["metrics"]
        assert m["eval_reward_accuracy_initial"] == 0.0 and m["eval_reward_margin"] != 0.0


def test_reference_model_with_another_tokenizer_is_refused(tmp_path, cache):
    proc = cli(tmp_path, cache, *QUICK, "pref.ref_model=builtin:bench", check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "pref.ref_model: the tokenizer of the reference model does not match" in proc.stderr
    assert "Traceback" not in proc.stderr
