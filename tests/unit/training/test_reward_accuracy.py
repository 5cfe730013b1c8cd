"""train.compute_accuracy for the rm/dpo/kto stages: the held-out reward accuracy is also reported as
``eval_accuracy`` (and ``eval_accuracy_initial``), and the token-accuracy setting of TrainingArguments
(label_names) stays with pt/sft, whose batches carry labels. Pre-flight (rule train-compute-accuracy) refuses it
for PPO and for a preference stage without held-out data; tests/unit/config/test_rules.py runs its examples."""
from __future__ import annotations

import json
import types

import pytest

pytest.importorskip("transformers")


@pytest.mark.parametrize("on", [True, False])
def test_reward_accuracy_is_named_eval_accuracy(tmp_path, monkeypatch, on):
    import llmpipe.training.causal as causal
    from llmpipe.training.pref_common import finish

    saved = {}
    monkeypatch.setattr(causal, "run_trainer", lambda ctx, trainer, eval_ds: {"eval_rewards/accuracies": 0.75})
    monkeypatch.setattr(causal, "save_outputs", lambda ctx, trainer, tok, metrics: saved.update(metrics))
    (tmp_path / "initial_eval.json").write_text(json.dumps({"eval_rewards/accuracies": 0.25}))
    ctx = types.SimpleNamespace(obj=types.SimpleNamespace(train=types.SimpleNamespace(compute_accuracy=on)),
                                work=tmp_path, log=lambda s: None)
    out = finish(ctx, types.SimpleNamespace(model=object()), None, eval_ds=[1], family="pairwise")["metrics"]
    assert out == saved and (out["eval_reward_accuracy"], out["eval_reward_accuracy_initial"]) == (0.75, 0.25)
    if on:
        assert (out["eval_accuracy"], out["eval_accuracy_initial"]) == (0.75, 0.25)
    else:
        assert "eval_accuracy" not in out


@pytest.mark.parametrize("stage,labels", [("sft", ["labels"]), ("rm", None), ("dpo", None)])
def test_label_names_only_for_token_accuracy(tmp_path, stage, labels):
    from methods_support import cfg_of

    from llmpipe.training.args import training_arguments

    extra = [] if stage == "sft" else ["data.dataset=demo_pref", "data.val_size=0.1"]
    cfg = cfg_of(f"train.stage={stage}", "train.compute_accuracy=true", *extra)
    assert training_arguments(cfg, tmp_path, has_eval=True).label_names == labels
