"""Training-loop rules: precision flags, experiment trackers and their packages, best-model selection."""
from __future__ import annotations

from llmpipe.config.families.pref import REFERENCE_FREE
from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import evaluates, get, problem
from llmpipe.config.rules._common import stage as stage_of

# report_to value -> Python module that must be importable, and how to install it
TRACKERS = {
    "tensorboard": ("tensorboard", "pip install tensorboard"), "wandb": ("wandb", "pip install wandb"),
    "mlflow": ("mlflow", "pip install mlflow"), "trackio": ("trackio", "pip install trackio"),
    "comet_ml": ("comet_ml", "pip install comet_ml"), "clearml": ("clearml", "pip install clearml"),
    "swanlab": ("swanlab", "pip install swanlab"), "neptune": ("neptune", "pip install neptune"),
    "dagshub": ("dagshub", "pip install dagshub"), "dvclive": ("dvclive", "pip install dvclive"),
    "azure_ml": ("azureml", "pip install azureml-core"), "codecarbon": ("codecarbon", "pip install codecarbon"),
}


@rule("train-precision", keys=["train.bf16", "train.fp16", "train.pure_bf16"],
      bad=[["train.bf16=true", "train.fp16=true"], ["train.pure_bf16=true", "train.fp16=true"]],
      good=[["train.bf16=true"], ["train.fp16=true"], ["train.pure_bf16=true"]])
def precision(cfg, env):
    """One precision at a time: bf16, fp16 or pure bf16."""
    on = [k for k in ("train.bf16", "train.fp16", "train.pure_bf16") if get(cfg, k)]
    if "train.fp16" in on and len(on) > 1:
        yield problem("train-precision", " + ".join(on), True, "fp16 and bf16 cannot both be the training precision",
                      "one of train.bf16, train.fp16, train.pure_bf16", "train.fp16=false (bf16 is the safer choice)")


@rule("train-tf32", keys=["train.tf32"], bad=[["train.tf32=true"]], good=[["train.tf32=false"], ["train.tf32=null"]],
      env={"gpu_count": 0})
def tf32(cfg, env):
    """TF32 is a mode of NVIDIA Ampere+ GPUs."""
    if get(cfg, "train.tf32") and not env.cuda:
        yield problem("train-tf32", "train.tf32", True, "TF32 matmuls need an NVIDIA (Ampere or newer) GPU and this machine has none",
                      "train.tf32=null (torch default) or false without a GPU", "train.tf32=null")


@rule("train-report-to", keys=["train.report_to"],
      bad=[["train.report_to=tensorboard"], ["train.report_to='none,wandb'"], ["train.report_to=mlflow"],
           ["train.report_to=carrier_pigeon"]],
      good=[["train.report_to=none"], ["train.report_to=all"]],
      env={"missing_packages": frozenset(m for m, _ in TRACKERS.values())})
def report_to(cfg, env):
    """Every experiment tracker named in train.report_to must be known and installed."""
    names = get(cfg, "train.report_to", [])
    if "none" in names and len(names) > 1:
        yield problem("train-report-to", "train.report_to", get(cfg, "train.report_to"),
                      "'none' turns every tracker off, so it cannot be combined with others",
                      "none, all, or a comma-separated list of trackers", "train.report_to=" + ",".join(n for n in names if n != "none"))
    for name in names:
        if name in ("none", "all"):
            continue
        if name not in TRACKERS:
            yield problem("train-report-to", "train.report_to", name, "is not an experiment tracker transformers knows",
                          "none, all, " + ", ".join(TRACKERS), "train.report_to=tensorboard")
        elif not env.has(TRACKERS[name][0]):
            yield problem("train-report-to", "train.report_to", name, f"the Python module {TRACKERS[name][0]} is not installed",
                          "an installed tracker, or none", f"{TRACKERS[name][1]}, or train.report_to=none")


@rule("train-plot-loss", keys=["train.plot_loss"], bad=[["train.plot_loss=true"]], good=[["train.plot_loss=false"]],
      env={"missing_packages": frozenset({"matplotlib"})})
def plot_loss(cfg, env):
    """The loss plot is drawn with matplotlib."""
    if get(cfg, "train.plot_loss") and not env.has("matplotlib"):
        yield problem("train-plot-loss", "train.plot_loss", True, "needs matplotlib, which is not installed",
                      "train.plot_loss=false without matplotlib", "pip install matplotlib, or train.plot_loss=false")


@rule("train-best-model", keys=["train.load_best_model_at_end", "train.eval_strategy", "train.save_strategy",
                                "train.eval_steps", "train.save_steps", "train.early_stopping_steps",
                                "train.metric_for_best_model"],
      bad=[["train.load_best_model_at_end=true"],
           ["train.load_best_model_at_end=true", "train.eval_strategy=epoch", "data.val_size=0.1"],
           ["train.load_best_model_at_end=true", "train.eval_strategy=steps", "train.eval_steps=30", "train.save_steps=50",
            "data.val_size=0.1"],
           ["train.early_stopping_steps=3", "train.eval_strategy=steps", "data.val_size=0.1"]],
      good=[["train.load_best_model_at_end=true", "train.eval_strategy=steps", "data.val_size=0.1"],
            ["train.load_best_model_at_end=true", "train.eval_strategy=steps", "train.eval_steps=25", "train.save_steps=50",
             "data.val_size=0.1"],
            ["train.early_stopping_steps=3", "train.eval_strategy=steps", "train.metric_for_best_model=eval_loss",
             "data.val_size=0.1"]])
def best_model(cfg, env):
    """Keeping the best checkpoint or stopping early needs evaluations aligned with checkpoints and a metric."""
    ev, sv = get(cfg, "train.eval_strategy", "no"), get(cfg, "train.save_strategy", "steps")
    if get(cfg, "train.load_best_model_at_end"):
        if ev == "no":
            yield problem("train-best-model", "train.load_best_model_at_end", True, "the best checkpoint is chosen by evaluation, and train.eval_strategy=no",
                          "train.eval_strategy=steps or epoch", "train.eval_strategy=steps")
        elif sv not in (ev, "best"):
            yield problem("train-best-model", "train.save_strategy", sv, f"must match train.eval_strategy={ev} so that every evaluated step has a checkpoint",
                          f"train.save_strategy={ev}", f"train.save_strategy={ev}")
        elif ev == "steps":
            es, ss = get(cfg, "train.eval_steps") or get(cfg, "train.logging_steps"), get(cfg, "train.save_steps")
            if es and ss and es >= 1 and ss >= 1 and ss % es:
                yield problem("train-best-model", "train.save_steps", ss, f"is not a multiple of the evaluation interval ({es:g})",
                              "train.save_steps = k * train.eval_steps", f"train.save_steps={int(es) * max(1, round(ss / es))}")
    if get(cfg, "train.early_stopping_steps") is not None:
        if not get(cfg, "train.metric_for_best_model"):
            yield problem("train-best-model", "train.early_stopping_steps", get(cfg, "train.early_stopping_steps"),
                          "early stopping watches train.metric_for_best_model, which is unset",
                          "a metric such as eval_loss", "train.metric_for_best_model=eval_loss")
        if not evaluates(cfg):
            yield problem("train-best-model", "train.early_stopping_steps", get(cfg, "train.early_stopping_steps"),
                          "early stopping needs periodic evaluations, and train.eval_strategy=no",
                          "train.eval_strategy=steps or epoch", "train.eval_strategy=steps")


@rule("train-padding-free", keys=["train.padding_free", "train.stage", "pref.loss", "data.packing", "data.neat_packing",
                                  "model.shift_attn", "model.use_unsloth"],
      bad=[["train.padding_free=true", "train.stage=rm", "data.dataset=demo_pref"],
           ["train.padding_free=true", "train.stage=dpo", "pref.loss=orpo", "data.dataset=demo_pref"],
           ["train.padding_free=true", "data.packing=true"], ["train.padding_free=true", "model.shift_attn=true"]],
      good=[["train.padding_free=true"], ["train.padding_free=true", "train.stage=dpo", "data.dataset=demo_pref"],
            ["train.padding_free=false", "data.packing=true"], ["train.stage=rm", "data.dataset=demo_pref"]])
def padding_free(cfg, env):
    """train.padding_free=true must change something: unpacked causal-LM batches or TRL DPOTrainer batches, on a
    model whose attention llmpipe can keep apart by position ids."""
    if get(cfg, "train.padding_free") is not True:
        return
    stage, loss = get(cfg, "train.stage", "sft"), get(cfg, "pref.loss", "sigmoid")
    if stage not in ("pt", "sft", "dpo") or (stage == "dpo" and loss in REFERENCE_FREE):
        what = f"train.stage={stage}" + (f" with pref.loss={loss}" if stage == "dpo" else "")
        yield problem("train-padding-free", "train.padding_free", True, f"{what} pads its batches in its own trainer",
                      "train.padding_free=true with train.stage pt, sft or dpo (not orpo/simpo)",
                      "train.padding_free=null")
    packing = get(cfg, "data.packing")
    if stage in ("pt", "sft") and (packing or get(cfg, "data.neat_packing") or (packing is None and stage == "pt")):
        yield problem("train-padding-free", "train.padding_free", True, "packed rows are already filled to "
                      "data.cutoff_len, so there are no padded batches to remove",
                      "train.padding_free=true with data.packing=false", "train.padding_free=null")
    for key in ("model.shift_attn", "model.use_unsloth"):
        if get(cfg, key):
            yield problem("train-padding-free", "train.padding_free", True, f"{key} replaces the attention that keeps "
                          "the examples of a padding-free row apart", f"train.padding_free=true without {key}",
                          "train.padding_free=null")


@rule("train-callbacks-stage", keys=["train.callbacks", "train.stage"],
      bad=[["train.stage=ppo", "ppo.reward_model=builtin:tiny",
            "train.callbacks=[{_target_: transformers.EarlyStoppingCallback}]"]],
      good=[["train.callbacks=[{_target_: transformers.EarlyStoppingCallback}]"]])
def callbacks_stage(cfg, env):
    """train.callbacks are Trainer callbacks; PPO runs its own loop, which has no Trainer to call them."""
    if get(cfg, "train.callbacks") and get(cfg, "train.stage") == "ppo":
        yield problem("train-callbacks-stage", "train.callbacks", "[...]",
                      "PPO's loop is not a transformers Trainer, so Trainer callbacks would never be called",
                      "train.callbacks with pt, sft, rm, dpo or kto", "train.callbacks=[] for PPO")


PAIRWISE_ACCURACY = {"rm": "the share of held-out pairs whose chosen answer gets the higher reward",
                     "dpo": "the share of held-out pairs whose chosen answer gets the higher implicit reward",
                     "kto": "the ranking accuracy of the implicit reward over held-out desirable/undesirable answers"}


@rule("train-compute-accuracy", keys=["train.compute_accuracy", "train.stage", "data.eval_dataset", "data.val_size"],
      bad=[["train.stage=dpo", "data.dataset=demo_pref", "train.compute_accuracy=true"],
           ["train.stage=ppo", "ppo.reward_model=builtin:tiny", "train.compute_accuracy=true"]],
      good=[["train.stage=dpo", "data.dataset=demo_pref", "data.val_size=0.1", "train.compute_accuracy=true"],
            ["train.stage=rm", "data.dataset=demo_pref", "data.val_size=0.1", "train.compute_accuracy=true"]])
def compute_accuracy(cfg, env):
    """train.compute_accuracy is next-token accuracy for pt/sft; for rm, dpo and kto it is the held-out reward
    accuracy (``eval_accuracy``, the same figure as ``eval_reward_accuracy``), which needs held-out data; PPO has
    no accuracy (it reports the mean reward of held-out answers)."""
    if not get(cfg, "train.compute_accuracy"):
        return
    st = stage_of(cfg)
    if st == "ppo":
        yield problem("train-compute-accuracy", "train.compute_accuracy", True,
                      "PPO has no accuracy to compute: it reports reward_mean, the mean reward of held-out answers, "
                      "before and after training", "train.compute_accuracy=false for train.stage=ppo",
                      "train.compute_accuracy=false")
    elif st in PAIRWISE_ACCURACY and not get(cfg, "data.eval_dataset") and get(cfg, "data.val_size", 0.0) <= 1e-6:
        yield problem("train-compute-accuracy", "train.compute_accuracy", True,
                      f"for train.stage={st} the accuracy is {PAIRWISE_ACCURACY[st]} (eval_accuracy), "
                      "and this run has no held-out data to measure it on",
                      "held-out data: data.eval_dataset=<name> or data.val_size > 0",
                      "data.val_size=0.1")


@rule("train-fp16-opt-level", keys=["train.fp16_opt_level"],
      bad=[["train.fp16_opt_level=O2"]], good=[["train.fp16_opt_level=O1"]])
def fp16_opt_level(cfg, env):
    """fp16_opt_level was an apex AMP setting; transformers 5 removed apex (fp16 runs on torch.amp), so no level
    can be chosen."""
    level = get(cfg, "train.fp16_opt_level", "O1")
    if level != "O1":
        yield problem("train-fp16-opt-level", "train.fp16_opt_level", level,
                      "is an apex AMP setting, and transformers 5 removed apex: fp16 training uses torch.amp, which "
                      "has no optimisation levels", "O1 (the default; no effect)", "remove train.fp16_opt_level")
