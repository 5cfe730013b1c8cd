"""Rules on transformers' own training arguments passed through under train.* (llmpipe.config.families.trainer_fields):
where the Trainer that would read them does not run, or where a value cannot work with another."""
from __future__ import annotations

from llmpipe.config.environment import offline
from llmpipe.config.families.trainer_fields import PASSTHROUGH, is_set
from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import evaluates, get, problem, stage, world_size

PPO = ["train.stage=ppo", "ppo.reward_model=llmpipe-test/rm"]


@rule("trainer-fields-ppo", keys=[f"train.{k}" for k in PASSTHROUGH] + ["train.stage"],
      bad=[PPO + ["train.torch_compile=true"], PPO + ["train.neftune_noise_alpha=5"]],
      good=[PPO, ["train.torch_compile=true"]])
def ppo_has_no_trainer(cfg, env):
    """transformers' training arguments reach the Trainer of the other stages; llmpipe's PPO loop builds none."""
    if stage(cfg) != "ppo":
        return
    for name in PASSTHROUGH:
        value = get(cfg, f"train.{name}")
        if is_set(value):
            yield problem("trainer-fields-ppo", f"train.{name}", value, "is an argument of transformers' Trainer, and "
                          "the PPO loop runs without one", "unset for train.stage=ppo", f"remove train.{name}")


@rule("trainer-label-smoothing", keys=["train.label_smoothing_factor", "train.stage"],
      bad=[["train.stage=dpo", "data.dataset=demo_pref", "train.label_smoothing_factor=0.1"],
           ["train.stage=rm", "data.dataset=demo_pref", "train.label_smoothing_factor=0.1"]],
      good=[["train.label_smoothing_factor=0.1"], ["train.stage=dpo", "data.dataset=demo_pref"]])
def label_smoothing(cfg, env):
    """The Trainer smooths the labels of a language-model loss (pt, sft); the preference and reward trainers compute
    their own losses and would never read it."""
    value = get(cfg, "train.label_smoothing_factor")
    if value and stage(cfg) not in ("pt", "sft"):
        fix = "pref.dpo_label_smoothing (robust DPO)" if stage(cfg) == "dpo" else "remove it"
        yield problem("trainer-label-smoothing", "train.label_smoothing_factor", value,
                      f"smooths the labels of the pt/sft loss; train.stage={stage(cfg)} computes its own loss",
                      "unset for this stage", fix)


@rule("trainer-sampling-shuffle", keys=["train.train_sampling_strategy", "train.disable_shuffling"],
      bad=[["train.disable_shuffling=true", "train.train_sampling_strategy=group_by_length"]],
      good=[["train.disable_shuffling=true"], ["train.train_sampling_strategy=group_by_length"],
            ["train.disable_shuffling=true", "train.train_sampling_strategy=sequential"]])
def sampling_shuffle(cfg, env):
    """train.disable_shuffling means the sequential sampler; another train_sampling_strategy contradicts it."""
    strategy = get(cfg, "train.train_sampling_strategy")
    if get(cfg, "train.disable_shuffling") and strategy not in (None, "sequential"):
        yield problem("trainer-sampling-shuffle", "train.train_sampling_strategy", strategy,
                      "train.disable_shuffling=true already asks for the sequential sampler", "sequential or unset",
                      "drop one of the two")


def _workers(cfg) -> bool:
    return (get(cfg, "train.dataloader_num_workers") or 0) > 0


def _pushes(cfg) -> bool:
    return bool(get(cfg, "train.push_to_hub"))


def _trackio(cfg) -> bool:
    return "trackio" in (get(cfg, "train.report_to") or [])


def _best_model(cfg) -> bool:
    return bool(get(cfg, "train.metric_for_best_model"))


# field -> (does it act in this configuration?, what it needs, the fix)
_NEEDS = {
    **{k: (_workers, "data-loading worker processes (train.dataloader_num_workers > 0)", "train.dataloader_num_workers=2")
       for k in ("dataloader_prefetch_factor", "dataloader_persistent_workers", "dataloader_multiprocessing_context")},
    **{k: (evaluates, "an evaluation (train.do_eval=true or an eval_strategy)", "train.do_eval=true")
       for k in ("eval_delay", "eval_on_start", "eval_accumulation_steps", "prediction_loss_only",
                 "eval_do_concat_batches", "bf16_full_eval", "fp16_full_eval")},
    **{k: (lambda cfg: world_size(cfg) > 1, "several processes (a ddp/deepspeed/fsdp launch)", "launch=ddp")
       for k in ("ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_static_graph",
                 "average_tokens_across_devices", "save_on_each_node", "log_on_each_node", "eval_use_gather_object")},
    **{k: (_pushes, "train.push_to_hub=true", "train.push_to_hub=true")
       for k in ("hub_model_id", "hub_strategy", "hub_private_repo", "hub_always_push", "hub_revision")},
    **{k: (_trackio, "the trackio tracker (train.report_to=trackio)", "train.report_to=trackio")
       for k in ("project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id")},
    "greater_is_better": (_best_model, "train.metric_for_best_model", "train.metric_for_best_model=eval_loss"),
}


@rule("trainer-field-context", keys=[f"train.{k}" for k in _NEEDS] + ["train.dataloader_num_workers", "train.do_eval",
                                                                       "train.eval_strategy", "train.push_to_hub",
                                                                       "train.report_to", "train.metric_for_best_model"],
      bad=[["train.dataloader_prefetch_factor=2"], ["train.dataloader_persistent_workers=true"],
           ["train.eval_on_start=true"], ["train.ddp_bucket_cap_mb=10"], ["train.hub_model_id=me/model"],
           ["train.project=p"], ["train.greater_is_better=true"]],
      good=[["train.dataloader_num_workers=1", "train.dataloader_prefetch_factor=2"],
            ["train.do_eval=true", "data.val_size=0.1", "train.eval_on_start=true"],
            ["launch=ddp", "launch.nproc_per_node=2", "train.use_cpu=true", "train.ddp_bucket_cap_mb=10"]])
def field_context(cfg, env):
    """A transformers training argument that only acts with another setting (data-loading workers, an evaluation,
    several processes, pushing to the hub, the trackio tracker, a metric for the best model) would be ignored by the
    Trainer without it."""
    for name, (acts, needs, fix) in _NEEDS.items():
        value = get(cfg, f"train.{name}")
        if is_set(value) and not acts(cfg):
            yield problem("trainer-field-context", f"train.{name}", value, f"acts only with {needs}, and this run has "
                          "none, so the Trainer would ignore it", f"unset, or with {needs}", f"{fix}, or remove it")


@rule("trainer-push-offline", keys=["train.push_to_hub"],
      bad=[["train.push_to_hub=true"]], good=[["train.push_to_hub=false"], []])
def push_offline(cfg, env):
    """The Trainer creates the hub repository when it starts and pushes at each save: it needs the network."""
    var = offline()
    if var is not None and get(cfg, "train.push_to_hub"):
        yield problem("trainer-push-offline", "train.push_to_hub", True, f"pushing to the hub needs the network, and "
                      f"{var}=1", "false while offline", f"train.push_to_hub=false (or export.hub_model_id with the "
                      f"network), or unset {var}")


@rule("trainer-pin-memory", keys=["train.dataloader_pin_memory"],
      bad=[["train.dataloader_pin_memory=false"]], good=[[]], env={"gpu_count": 0})
def pin_memory(cfg, env):
    """Pinned host memory speeds up copies to a CUDA GPU; without one transformers never pins, whatever the value."""
    value = get(cfg, "train.dataloader_pin_memory")
    if value is not None and not env.cuda:
        yield problem("trainer-pin-memory", "train.dataloader_pin_memory", value, "pins host memory for copies to a "
                      "CUDA GPU, and this machine has none (transformers never pins here)", "unset without a GPU",
                      "remove train.dataloader_pin_memory")


_PROFILER = ("profiler_output_dir", "profiler_wait_steps", "profiler_warmup_steps", "profiler_active_steps",
             "profiler_repeat", "profiler_record_shapes", "profiler_profile_memory", "profiler_with_stack")


@rule("train-profiler-off", keys=["train.enable_torch_profiler"] + [f"train.{k}" for k in _PROFILER],
      bad=[["train.profiler_active_steps=3"], ["train.profiler_with_stack=false"]],
      good=[["train.enable_torch_profiler=true", "train.profiler_active_steps=3"], []])
def profiler_off(cfg, env):
    """The profiler's settings act only with train.enable_torch_profiler=true."""
    if get(cfg, "train.enable_torch_profiler"):
        return
    from llmpipe.config.flags import flag_table

    table = flag_table()
    for name in _PROFILER:
        path = f"train.{name}"
        if get(cfg, path) != table.default(path):
            yield problem("train-profiler-off", path, get(cfg, path), "is a setting of the torch profiler, which is "
                          "off", "with train.enable_torch_profiler=true", "train.enable_torch_profiler=true, or "
                          f"remove {path}")
