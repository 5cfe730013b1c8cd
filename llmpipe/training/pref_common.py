"""What the rm/dpo/kto stages share around a TRL trainer: the TRL config built from the typed config, the
trainer class (with llmpipe's optimizer methods), the run (initial eval, resume, final eval), clean metric
names, and the outputs (the train stage's usual adapter/ or model/, metrics.json, log_history.json, loss.png).

Clean metric names (metrics.json, the lock file, sweep tables): ``eval_reward_accuracy`` — share of held-out
pairs whose chosen response gets the higher reward (ties count as wrong, so an untrained policy scores 0 and a
random ranking 0.5); ``eval_reward_margin`` — mean reward of chosen minus rejected; both also with an
``_initial`` suffix for the model before training where the trainer reports them. With
``train.compute_accuracy=true`` the reward accuracy is also reported as ``eval_accuracy`` (and
``eval_accuracy_initial``), the name that flag gives to next-token accuracy in the pt/sft stages.
"""
from __future__ import annotations

import json
from typing import Any

from llmpipe.training.job import TrainJob

# clean name -> the trainer's own metric name, per trainer family
TRL_NAMES = {
    "pairwise": {"eval_reward_accuracy": "eval_rewards/accuracies", "eval_reward_margin": "eval_rewards/margins"},
    "rm": {"eval_reward_accuracy": "eval_accuracy", "eval_reward_margin": "eval_margin"},
    "kto": {"eval_reward_margin": "eval_rewards/margins"},
}


def trl_config(ctx: TrainJob, cls, has_eval: bool, **extra: Any):
    """``cls`` (a TRL config) from the train family plus ``extra``; max_length = data.cutoff_len."""
    from llmpipe.training.args import training_arguments

    cfg = ctx.obj
    return training_arguments(cfg, ctx.work / "checkpoints", cls=cls, has_eval=has_eval,
                              max_length=cfg.data.cutoff_len, dataset_num_proc=cfg.data.preprocessing_num_workers,
                              **extra)


def trainer_for(base: type, ctx: TrainJob, **kwargs):
    """``base`` (a TRL trainer) with llmpipe's optimizer methods, a progress line per logging step and the
    configured experiment trackers."""
    from llmpipe.training.lm_head import trl_fused_head
    from llmpipe.training.optimizers import trainer_class
    from llmpipe.training.progress import trainer_callbacks

    with trl_fused_head(ctx.obj):
        trainer = trainer_class(base, ctx.obj)(callbacks=trainer_callbacks(ctx.obj, ctx.log), **kwargs)
    try:
        from llmpipe.training.metrics import point_trackers

        point_trackers(trainer, ctx.obj, ctx.out / "tensorboard", ctx.job_dir)
    except ImportError:   # older checkouts without experiment-tracker support
        pass
    return trainer


def clean_metrics(metrics: dict[str, Any], initial: dict[str, Any], family: str) -> dict[str, Any]:
    """``metrics`` plus the clean names of ``family`` (and their ``_initial`` values from ``initial``)."""
    out = dict(metrics)
    for clean, trl in TRL_NAMES[family].items():
        if trl in metrics:
            out[clean] = metrics[trl]
        if trl in initial:
            out[f"{clean}_initial"] = initial[trl]
    return out


def finish(ctx: TrainJob, trainer, tokenizer, eval_ds, family: str, extra=None) -> dict:
    """Run ``trainer`` (resuming from checkpoints), name the metrics, save the outputs; the stage's result.
    ``extra(trainer) -> dict`` adds metrics measured after training (e.g. KTO's ranking accuracy)."""
    from llmpipe.training.causal import run_trainer, save_outputs

    metrics = run_trainer(ctx, trainer, eval_ds)
    initial_path = ctx.work / "initial_eval.json"
    initial = json.loads(initial_path.read_text()) if initial_path.exists() else {}
    if extra is not None and eval_ds is not None:
        metrics.update(extra(trainer))
    metrics = clean_metrics(metrics, initial, family)
    if ctx.obj.train.compute_accuracy:   # for these stages the accuracy is the reward accuracy
        metrics.update({k.replace("eval_reward_accuracy", "eval_accuracy"): v for k, v in metrics.items()
                        if k.startswith("eval_reward_accuracy")})
    if "eval_reward_accuracy" in metrics:
        before = metrics.get("eval_reward_accuracy_initial")
        ctx.log("held-out reward accuracy " + (f"{before:.3f} -> " if before is not None else "")
                + f"{metrics['eval_reward_accuracy']:.3f}, margin {metrics.get('eval_reward_margin', float('nan')):.3f}")
    model = trainer.model
    if hasattr(model, "peft_config") and "ref" in model.peft_config:
        model.delete_adapter("ref")   # TRL's frozen copy of a resumed adapter: the reference, not a result
    save_outputs(ctx, trainer, tokenizer, metrics)
    return {"metrics": metrics}
