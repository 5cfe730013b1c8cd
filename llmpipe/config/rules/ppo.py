"""PPO and reward-model rules."""
from __future__ import annotations

from llmpipe.config.rules._common import as_list, evaluates, ft_type, get, problem, stage
from llmpipe.config.validate import rule

PPO_LOGGERS = ("none", "wandb", "tensorboard", "trackio")
PPO = ["train.stage=ppo", "ppo.reward_model=llmpipe-test/rm"]


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


@rule("ppo-no-eval", keys=["train.stage", "train.do_eval", "train.do_predict", "data.eval_dataset", "data.val_size"],
      bad=[PPO + ["train.do_eval=true", "data.val_size=0.1"], PPO + ["data.eval_dataset=demo_sft_eval"],
           PPO + ["train.do_predict=true", "data.val_size=0.1"]],
      good=[PPO, ["train.do_eval=true", "data.val_size=0.1"]])
def no_eval(cfg, env):
    """PPO only trains; evaluate the policy with an sft-stage evaluation afterwards."""
    if stage(cfg) != "ppo":
        return
    asks = [k for k in ("train.do_eval", "train.do_predict") if get(cfg, k)]
    if evaluates(cfg) and "train.do_eval" not in asks:
        asks.append("train.eval_strategy")
    asks += [k for k in ("data.eval_dataset",) if get(cfg, k)]
    if get(cfg, "data.val_size", 0.0) > 1e-6:
        asks.append("data.val_size")
    for key in asks:
        yield problem("ppo-no-eval", key, get(cfg, key), "PPO training has no evaluation loop",
                      f"{key} unset/false for train.stage=ppo",
                      f"drop {key}; evaluate the PPO result in a separate run with train.stage=sft train.do_eval=true")


@rule("ppo-shift-attn", keys=["train.stage", "model.shift_attn"],
      bad=[PPO + ["model.shift_attn=true"]], good=[PPO, ["model.shift_attn=true"]])
def shift_attn(cfg, env):
    """S^2-Attn shifts attention groups during training; PPO's generation cannot run with it."""
    if stage(cfg) == "ppo" and get(cfg, "model.shift_attn"):
        yield problem("ppo-shift-attn", "model.shift_attn", True, "shift short attention (S^2-Attn) does not work with PPO",
                      "model.shift_attn=false for train.stage=ppo", "model.shift_attn=false")


@rule("ppo-report-to", keys=["train.stage", "train.report_to"],
      bad=[PPO + ["train.report_to=mlflow"], PPO + ["train.report_to='wandb,mlflow'"]],
      good=[PPO + ["train.report_to=none"], ["train.report_to=mlflow"]],
      env={"available_packages": frozenset({"mlflow", "wandb", "tensorboard"})})
def report_to(cfg, env):
    """The PPO trainer logs only to wandb, tensorboard or trackio."""
    if stage(cfg) != "ppo":
        return
    bad = [r for r in as_list(get(cfg, "train.report_to", "none")) if r not in PPO_LOGGERS]
    if bad:
        yield problem("ppo-report-to", "train.report_to", get(cfg, "train.report_to"),
                      f"PPO cannot log to {', '.join(bad)}", ", ".join(PPO_LOGGERS), "train.report_to=tensorboard")
