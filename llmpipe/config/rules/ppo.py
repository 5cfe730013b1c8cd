"""PPO and reward-model rules."""
from __future__ import annotations

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import evaluates, ft_type, get, launch_kind, problem, stage, world_size

# what accelerate, which PPO logs through, can log to (accelerate.utils.LoggerType)
PPO_LOGGERS = ("none", "all", "aim", "tensorboard", "wandb", "trackio", "comet_ml", "mlflow", "clearml", "dvclive", "swanlab")
PPO = ["train.stage=ppo", "ppo.reward_model=llmpipe-test/rm"]
STEP = "step:"   # ppo.reward_model=step:<name>: the reward model trained by pipeline.before.<name> (train.stage=rm)


def reward_step(cfg) -> str | None:
    """The pipeline.before step named by ppo.reward_model=step:<name> of a ppo step, else None."""
    rm = str(get(cfg, "ppo.reward_model", "") or "")
    return rm[len(STEP):].strip() if stage(cfg) == "ppo" and rm.startswith(STEP) else None


def step_problems(steps) -> list:
    """Chained steps: every ppo.reward_model=step:<name> names an earlier rm step of the right kind, and every
    rm step before the main one is used by such a reference. ``steps``: [(".name" or "", config)]."""
    from llmpipe.problems import Problem

    out, seen, used = [], {}, set()
    for suffix, scfg in steps:
        where = f"pipeline.before.{suffix[1:]}: ppo.reward_model" if suffix else "ppo.reward_model"
        name = reward_step(scfg)
        if name is not None:
            target = seen.get(name)
            used.add(name)
            if target is None:
                out.append(Problem(where, f"{STEP}{name}", f"names no earlier step (steps before it: "
                                   f"{', '.join(seen) or 'none'})", "step:<name of a pipeline.before entry with train.stage=rm>",
                                   f"add pipeline.before.{name} with train.stage=rm, or point ppo.reward_model at a model"))
            elif stage(target) != "rm":
                out.append(Problem(where, f"{STEP}{name}", f"pipeline.before.{name} trains train.stage={stage(target)}, "
                                   "not a reward model", "a step with train.stage=rm", f"pipeline.before.{name}.train.stage=rm"))
            elif get(scfg, "ppo.reward_model_type", "lora") == "lora" and ft_type(target) != "lora":
                out.append(Problem(f"{where}_type", "lora", f"pipeline.before.{name} trains a {ft_type(target)} reward "
                                   "model, not a LoRA adapter", "reward_model_type=full for a full/freeze reward model",
                                   "ppo.reward_model_type=full"))
        if suffix:
            seen[suffix[1:]] = scfg
    for suffix, scfg in steps[:-1]:
        if stage(scfg) == "rm" and suffix[1:] not in used:
            out.append(Problem(f"pipeline.before.{suffix[1:]}", "train.stage=rm", "trains a reward model that no later "
                               "step uses (a reward model does not become the next step's starting model)",
                               "a reward-model step referenced by a ppo step", f"ppo.reward_model={STEP}{suffix[1:]}"))
    return out


@rule("ppo-reward-model", keys=["train.stage", "ppo.reward_model"],
      bad=[["train.stage=ppo"]],
      good=[PPO, ["train.stage=sft"]])
def reward_model(cfg, env):
    """PPO scores its generations with a reward model, which must be given."""
    if stage(cfg) == "ppo" and not get(cfg, "ppo.reward_model"):
        yield problem("ppo-reward-model", "ppo.reward_model", None, "PPO needs a reward model to score its generations",
                      "an adapter trained with train.stage=rm (reward_model_type=lora), a full model (full), or an"
                      " http(s) scoring endpoint (api)", "ppo.reward_model=<path of the rm stage's output>")


@rule("ppo-reward-api", keys=["ppo.reward_model_type", "ppo.reward_model"],
      bad=[PPO + ["ppo.reward_model_type=api"], ["train.stage=ppo", "ppo.reward_model=http://localhost:8000/score"]],
      good=[["train.stage=ppo", "ppo.reward_model=http://localhost:8000/score", "ppo.reward_model_type=api"],
            ["train.stage=ppo", "ppo.reward_model=https://scorer.example/v1", "ppo.reward_model_type=api"]])
def reward_api(cfg, env):
    """reward_model_type=api takes the full http(s) URL of a scoring endpoint, and only then is a URL valid."""
    rm, kind = get(cfg, "ppo.reward_model"), get(cfg, "ppo.reward_model_type", "lora")
    if stage(cfg) != "ppo" or not rm:
        return
    is_url = str(rm).startswith(("http://", "https://"))
    if kind == "api" and not is_url:
        yield problem("ppo-reward-api", "ppo.reward_model", rm, "reward_model_type=api expects the full URL of a scoring endpoint",
                      "http://host:port/path or https://...", "ppo.reward_model=http://<host>:<port>/<path>")
    elif kind != "api" and is_url:
        yield problem("ppo-reward-api", "ppo.reward_model_type", kind, f"ppo.reward_model is a URL ({rm}) but the type says {kind}",
                      "api for a URL; lora or full for a model", "ppo.reward_model_type=api")


@rule("ppo-lora-reward-model", keys=["ppo.reward_model_type", "train.finetuning_type", "model.use_unsloth"],
      bad=[PPO + ["train.finetuning_type=full"], PPO + ["train.finetuning_type=freeze"]],
      good=[PPO, PPO + ["train.finetuning_type=full", "ppo.reward_model_type=full"]])
def lora_reward_model(cfg, env):
    """A LoRA reward model is a second adapter on the policy: the policy must be LoRA (and not Unsloth)."""
    if stage(cfg) != "ppo" or get(cfg, "ppo.reward_model_type", "lora") != "lora":
        return
    if ft_type(cfg) != "lora":
        yield problem("ppo-lora-reward-model", "ppo.reward_model_type", "lora",
                      f"a LoRA reward model is loaded as a second adapter of the policy, but train.finetuning_type={ft_type(cfg)}",
                      "reward_model_type=lora with LoRA training; full otherwise",
                      "ppo.reward_model_type=full (point ppo.reward_model at a full reward model)")
    if get(cfg, "model.use_unsloth"):
        yield problem("ppo-lora-reward-model", "model.use_unsloth", True, "Unsloth models hold a single adapter, so no LoRA reward model",
                      "model.use_unsloth=false, or ppo.reward_model_type=full", "model.use_unsloth=false")


@rule("ppo-rm-best-model", keys=["train.stage", "train.load_best_model_at_end"],
      bad=[["train.stage=rm", "data.dataset=demo_pref", "train.load_best_model_at_end=true"],
           PPO + ["train.load_best_model_at_end=true"]],
      good=[["train.stage=rm", "data.dataset=demo_pref"],
            ["train.load_best_model_at_end=true", "train.eval_strategy=steps", "data.val_size=0.1"]])
def rm_best_model(cfg, env):
    """rm and ppo checkpoints cannot be ranked and reloaded as the best model."""
    if stage(cfg) in ("rm", "ppo") and get(cfg, "train.load_best_model_at_end"):
        yield problem("ppo-rm-best-model", "train.load_best_model_at_end", True,
                      f"train.stage={stage(cfg)} cannot reload its best checkpoint at the end",
                      f"train.load_best_model_at_end=false for {stage(cfg)}", "train.load_best_model_at_end=false")


@rule("ppo-no-eval", keys=["train.stage", "train.do_eval", "train.do_predict", "train.eval_strategy"],
      bad=[PPO + ["train.do_eval=true", "data.val_size=0.1"], PPO + ["train.eval_strategy=steps"],
           PPO + ["train.do_predict=true", "data.val_size=0.1"]],
      good=[PPO, PPO + ["data.eval_dataset=demo_sft_eval"], ["train.do_eval=true", "data.val_size=0.1"]])
def no_eval(cfg, env):
    """PPO has no evaluation loop: its held-out prompts (data.eval_dataset / val_size) are only scored before
    and after training (mean reward of the generations)."""
    if stage(cfg) != "ppo":
        return
    asks = [k for k in ("train.do_eval", "train.do_predict") if get(cfg, k)]
    if evaluates(cfg) and "train.do_eval" not in asks:
        asks.append("train.eval_strategy")
    for key in asks:
        yield problem("ppo-no-eval", key, get(cfg, key), "PPO training has no evaluation loop",
                      f"{key} unset/false for train.stage=ppo (data.eval_dataset is scored before and after training)",
                      f"drop {key}; evaluate the PPO result in a separate run with train.stage=sft train.do_eval=true")


@rule("ppo-shift-attn", keys=["train.stage", "model.shift_attn"],
      bad=[PPO + ["model.shift_attn=true"]], good=[PPO, ["model.shift_attn=true"]])
def shift_attn(cfg, env):
    """S^2-Attn shifts attention groups during training; PPO's generation cannot run with it."""
    if stage(cfg) == "ppo" and get(cfg, "model.shift_attn"):
        yield problem("ppo-shift-attn", "model.shift_attn", True, "shift short attention (S^2-Attn) does not work with PPO",
                      "model.shift_attn=false for train.stage=ppo", "model.shift_attn=false")


@rule("ppo-report-to", keys=["train.stage", "train.report_to"],
      bad=[PPO + ["train.report_to=neptune"], PPO + ["train.report_to='wandb,neptune'"]],
      good=[PPO + ["train.report_to=none"], PPO + ["train.report_to=tensorboard"], ["train.report_to=neptune"]],
      env={"available_packages": frozenset({"mlflow", "wandb", "tensorboard", "neptune"})})
def report_to(cfg, env):
    """The PPO loop logs through accelerate, which knows fewer trackers than the Trainer."""
    if stage(cfg) != "ppo":
        return
    bad = [r for r in get(cfg, "train.report_to", []) if r not in PPO_LOGGERS]
    if bad:
        yield problem("ppo-report-to", "train.report_to", get(cfg, "train.report_to"),
                      f"PPO cannot log to {', '.join(bad)}", ", ".join(PPO_LOGGERS), "train.report_to=tensorboard")


@rule("rm-export", keys=["train.stage", "export.dir"],
      bad=[["train.stage=rm", "data.dataset=demo_pref", "export.dir=exports/rm"]],
      good=[["train.stage=rm", "data.dataset=demo_pref"], ["export.dir=exports/sft"]])
def rm_export(cfg, env):
    """The merge/export stages write causal LMs; a reward model is used from the rm stage's output instead."""
    if stage(cfg) == "rm" and get(cfg, "export.dir"):
        yield problem("rm-export", "export.dir", get(cfg, "export.dir"), "the export stages write causal language models, "
                      "and a reward model is a sequence classifier", "export.dir=null for train.stage=rm",
                      "export.dir=null; use the train stage's adapter/ or model/ folder (llmpipe.training.reward_model."
                      "load_reward_model) or ppo.reward_model=step:<name> in a chained pipeline")


@rule("ppo-optimizer", keys=["train.stage", "train.optim", "galore.use_galore", "apollo.use_apollo", "badam.use_badam",
                             "badam.use_adam_mini", "muon.use_muon", "lora.loraplus_lr_ratio"],
      bad=[PPO + ["train.optim=sgd"], PPO + ["badam=layer"]],
      good=[PPO, PPO + ["train.optim=adamw_torch"], ["train.optim=sgd"]])
def ppo_optimizer(cfg, env):
    """llmpipe's PPO loop optimises with AdamW (train.learning_rate, adam_*, weight_decay, max_grad_norm)."""
    if stage(cfg) != "ppo":
        return
    optim = str(get(cfg, "train.optim", "adamw_torch"))
    if optim not in ("adamw_torch", "adamw_torch_fused"):
        yield problem("ppo-optimizer", "train.optim", optim, "the PPO loop optimises with AdamW only",
                      "adamw_torch or adamw_torch_fused for train.stage=ppo", "train.optim=adamw_torch")
    for key in ("galore.use_galore", "apollo.use_apollo", "badam.use_badam", "badam.use_adam_mini", "muon.use_muon",
                "lora.loraplus_lr_ratio"):
        if get(cfg, key):
            yield problem("ppo-optimizer", key, get(cfg, key),
                          "the PPO loop has no GaLore/APOLLO/BAdam/Adam-mini/Muon/LoRA+ support",
                          f"{key} off for train.stage=ppo", f"drop {key} (they work with the sft/dpo/kto/rm stages)")


@rule("ppo-launch", keys=["train.stage", "launch.kind", "launch.nproc_per_node", "launch.nnodes", "launch.deepspeed",
                          "launch.fsdp"],
      bad=[PPO + ["launch=ddp", "launch.nproc_per_node=2"], PPO + ["launch=deepspeed_z2"], PPO + ["launch=fsdp"]],
      good=[PPO, PPO + ["launch=ddp", "launch.nproc_per_node=1"], ["launch=ddp", "launch.nproc_per_node=2"]])
def ppo_launch(cfg, env):
    """llmpipe's PPO loop runs in one process on one device (the GPU when there is one): it does not share its
    gradients between ranks, so a launch that starts several would train unrelated copies."""
    if stage(cfg) != "ppo":
        return
    kind = launch_kind(cfg)
    if kind in ("deepspeed", "fsdp") or world_size(cfg) > 1:
        yield problem("ppo-launch", "launch.kind", kind, "the PPO loop runs in one process on one device and does not "
                      "synchronise ranks (DeepSpeed, FSDP or several processes would train unrelated copies)",
                      "launch=local, or one process", "launch=local (PPO uses the GPU when there is one)")


@rule("ppo-profiler", keys=["train.stage", "train.enable_torch_profiler", "train.profile_modules"],
      bad=[PPO + ["train.enable_torch_profiler=true"], PPO + ["train.profile_modules='model.layers.*'"]],
      good=[PPO, ["train.enable_torch_profiler=true"]])
def ppo_profiler(cfg, env):
    """The profilers are callbacks of the Trainer, and llmpipe's PPO loop runs without one."""
    if stage(cfg) != "ppo":
        return
    for key in ("train.enable_torch_profiler", "train.profile_modules"):
        if get(cfg, key):
            yield problem("ppo-profiler", key, get(cfg, key), "profiles the Trainer's steps, and the PPO loop runs "
                          "without a Trainer", "off for train.stage=ppo", f"remove {key}")
