"""Train family (``train.*``): stage, schedule, optimiser, precision, logging and checkpointing.

Field names follow transformers 5 ``TrainingArguments`` where one exists; flags that transformers 5 removed
(warmup_ratio, save_safetensors, logging_dir) are accepted and translated (llmpipe.config.translate).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from llmpipe.config.meta import ListFlag, OptionalListFlag, param  # noqa: F401  (OptionalListFlag: trainer fields)
from llmpipe.config.train_stages import stage_names

SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
    "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy",
)
OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor", "adamw_anyprecision",
    "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "adamw_8bit",
    "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit",
    "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "lomo", "adalomo", "grokadamw", "schedule_free_radam", "schedule_free_adamw",
    "schedule_free_sgd", "stable_adamw",
)
LOG_LEVELS = ("detail", "debug", "info", "warning", "error", "critical", "passive")
STRATEGIES = ("no", "steps", "epoch")


@dataclass
class TrainConfig:
    stage: str = param(
        "sft", "Training stage: pt (pre-training), sft, rm (reward model), ppo, dpo (all pairwise losses, see"
        " pref.loss), kto.", seed="stage", choices=stage_names(),
    )
    finetuning_type: str = param(
        "lora", "What is trained: lora (adapters), oft (orthogonal adapters, see oft.*; saved merged), freeze (the"
        " last layers, see freeze.*), full (all weights).",
        seed="finetuning_type", choices=("lora", "oft", "freeze", "full"),
    )
    do_train: bool = param(False, "Run training.", seed="do_train")
    do_eval: bool = param(False, "Evaluate on the evaluation split.", seed="do_eval")
    do_predict: bool = param(False, "Predict (generate) on the evaluation split.", seed="do_predict")
    output_dir: str = param(
        "trainer_output", "Folder, relative to the job's output directory (or absolute), where a successful run"
        " links its final model from the stage store: model (a full model) or adapter (LoRA).", seed="output_dir",
        volatile=True,
    )
    # batch / schedule
    per_device_train_batch_size: int = param(8, "Training batch size per device.", seed="per_device_train_batch_size", ge=1)
    per_device_eval_batch_size: int = param(8, "Evaluation batch size per device.", seed="per_device_eval_batch_size", ge=1)
    gradient_accumulation_steps: int = param(
        1, "Micro-batches accumulated per optimiser step.", seed="gradient_accumulation_steps", ge=1,
    )
    padding_free: Optional[bool] = param(
        None, "Run the examples of each batch as one row without pad tokens, kept apart by their position ids"
        " (same batches and losses as padded ones, no pad compute; causal LM and DPO-family stages). Unset = on"
        " where a check at the start shows the model keeps them apart; false = padded batches.",
    )
    learning_rate: float = param(5e-5, "Initial (peak) learning rate.", seed="learning_rate", gt=0.0)
    num_train_epochs: float = param(3.0, "Training epochs (ignored when max_steps > 0).", seed="num_train_epochs", gt=0.0)
    max_steps: int = param(-1, "Total optimiser steps; > 0 overrides num_train_epochs.", seed="max_steps", ge=-1)
    lr_scheduler_type: str = param(
        "linear", "Learning-rate schedule (transformers SchedulerType).", seed="lr_scheduler_type", choices=SCHEDULERS,
    )
    lr_scheduler_kwargs: Dict[str, Any] = param(
        None, "Extra keyword arguments of the schedule, e.g. {num_cycles: 2} (command line:"
        " ++train.lr_scheduler_kwargs={num_cycles:2}).", seed="lr_scheduler_kwargs",
        default_factory=dict,
    )
    warmup_steps: float = param(
        0.0, "Warm-up: a whole number of steps (>= 1), or a float in [0,1) = ratio of total steps (transformers 5).",
        seed="warmup_steps", ge=0.0,
    )
    warmup_ratio: Optional[float] = param(
        None, "Older flag: warm-up as a ratio of total steps.", seed="warmup_ratio", ge=0.0, lt=1.0,
        deprecated="removed in transformers 5; translated to train.warmup_steps=<ratio> (a float in [0,1))",
        seed_default=0.0,
    )
    # optimiser
    optim: str = param(
        "adamw_torch", "Optimiser (transformers OptimizerNames); GaLore, BAdam, Adam-mini and LoRA+ are chosen"
        " through their own families.", seed="optim", choices=OPTIMIZERS,
    )
    weight_decay: float = param(0.0, "Weight decay (AdamW decoupled).", seed="weight_decay", ge=0.0)
    adam_beta1: float = param(0.9, "Adam beta1.", seed="adam_beta1", ge=0.0, lt=1.0)
    adam_beta2: float = param(0.999, "Adam beta2.", seed="adam_beta2", ge=0.0, lt=1.0)
    adam_epsilon: float = param(1e-8, "Adam epsilon.", seed="adam_epsilon", gt=0.0)
    max_grad_norm: float = param(1.0, "Gradient clipping norm (0 = no clipping).", seed="max_grad_norm", ge=0.0)
    # evaluation
    eval_strategy: str = param("no", "When to evaluate: no, steps, epoch.", seed="eval_strategy", choices=STRATEGIES)
    eval_steps: Optional[float] = param(
        None, "Evaluate every N steps (int) or ratio of total steps (< 1); unset = logging_steps.", seed="eval_steps",
        gt=0.0,
    )
    load_best_model_at_end: bool = param(
        False, "Keep the best checkpoint (by metric_for_best_model) as the result.", seed="load_best_model_at_end",
    )
    metric_for_best_model: Optional[str] = param(
        None, "Metric that ranks checkpoints (e.g. eval_loss).", seed="metric_for_best_model",
    )
    early_stopping_steps: Optional[int] = param(
        None, "Stop after this many evaluations without improvement of metric_for_best_model.",
        seed="early_stopping_steps", ge=1,
    )
    compute_accuracy: bool = param(False, "Compute token-level accuracy when evaluating.", seed="compute_accuracy")
    # SFT token losses other than cross-entropy (llmpipe.training.sft_losses); at most one
    use_dft_loss: bool = param(
        False, "SFT: DFT loss, each label token's cross-entropy weighted by its (detached) probability.",
        seed="use_dft_loss",
    )
    use_asft_loss: bool = param(
        False, "SFT: ASFT loss, the DFT loss plus asft_alpha x KL(reference || model) per label token; the"
        " reference is the model before training (LoRA/OFT: adapters off; full/freeze: a frozen copy).",
        seed="use_asft_loss",
    )
    asft_alpha: float = param(0.1, "SFT: weight of ASFT's KL term.", seed="asft_alpha", ge=0.0)
    use_eaft_loss: bool = param(
        False, "SFT: EAFT loss, each label token's cross-entropy weighted by (entropy of the model's top-20"
        " distribution / 3) ** eaft_alpha (detached).", seed="use_eaft_loss",
    )
    eaft_alpha: float = param(1.0, "SFT: exponent of EAFT's entropy weight.", seed="eaft_alpha", ge=0.0)
    predict_with_generate: bool = param(
        False, "Generate during evaluation/prediction (needed by do_predict for sft).", seed="predict_with_generate",
    )
    # logging
    log_level: str = param(
        "passive", "Log level on the main process (passive = keep the library default).", seed="log_level",
        choices=LOG_LEVELS, volatile=True,
    )
    log_level_replica: str = param(
        "warning", "Log level on the other ranks.", seed="log_level_replica", choices=LOG_LEVELS, volatile=True,
    )
    logging_dir: Optional[str] = param(
        None, "TensorBoard log folder.", seed="logging_dir", volatile=True,
        deprecated="removed from transformers 5 TrainingArguments; kept and honoured by the train stage"
        " (TensorBoard writes here)",
    )
    logging_strategy: str = param(
        "steps", "When to log: no, steps, epoch.", seed="logging_strategy", choices=STRATEGIES, volatile=True,
    )
    logging_steps: float = param(
        500.0, "Log every N steps (int) or ratio of total steps (< 1).", seed="logging_steps", gt=0.0, volatile=True,
    )
    report_to: ListFlag = param(
        "none", "Experiment trackers, comma-separated (none, tensorboard, wandb, ...).", seed="report_to",
        volatile=True, list_sep=",",
    )
    run_name: Optional[str] = param(None, "Run name shown by the experiment trackers.", seed="run_name", volatile=True)
    # SwanLab (train.report_to=swanlab; llmpipe.training.swanlab_run)
    swanlab_project: str = param("llmpipe", "SwanLab project of the run.", seed="swanlab_project", volatile=True)
    swanlab_workspace: Optional[str] = param(None, "SwanLab workspace (organisation; unset = the user's own).",
                                             seed="swanlab_workspace", volatile=True)
    swanlab_run_name: Optional[str] = param(None, "SwanLab experiment name (unset = train.run_name, else SwanLab's).",
                                            seed="swanlab_run_name", volatile=True)
    swanlab_mode: str = param(
        "local", "SwanLab mode: local (files in swanlab_logdir only), offline (files to `swanlab sync` later) or"
        " cloud (uploads; needs swanlab_api_key).", seed="swanlab_mode", choices=("local", "offline", "cloud"),
        volatile=True,
    )
    swanlab_api_key: Optional[str] = param(None, "SwanLab API key of swanlab_mode=cloud (secret).",
                                           seed="swanlab_api_key", secret=True, volatile=True)
    swanlab_logdir: Optional[str] = param(None, "Folder of SwanLab's run files (unset = swanlog/ in the train"
                                          " stage's output).", seed="swanlab_logdir", volatile=True)
    swanlab_lark_webhook_url: Optional[str] = param(
        None, "Lark (Feishu) bot webhook SwanLab notifies when the run ends or fails.", seed="swanlab_lark_webhook_url",
        volatile=True,
    )
    swanlab_lark_secret: Optional[str] = param(None, "Signing secret of the Lark webhook (secret).",
                                               seed="swanlab_lark_secret", secret=True, volatile=True)
    plot_loss: bool = param(False, "Save a PNG of the training loss curve next to the outputs.", seed="plot_loss")
    include_effective_tokens_per_second: bool = param(
        False, "Report effective (non-padding) tokens per second.", seed="include_effective_tokens_per_second",
        volatile=True,
    )
    # checkpoints
    save_strategy: str = param(
        "steps", "When to save checkpoints: no, steps, epoch, best.", seed="save_strategy",
        choices=STRATEGIES + ("best",),
    )
    save_steps: float = param(500.0, "Save every N steps (int) or ratio of total steps (< 1).", seed="save_steps", gt=0.0)
    save_total_limit: Optional[int] = param(
        None, "Keep at most this many checkpoints (older ones deleted); unset = all.", seed="save_total_limit", ge=1,
    )
    save_only_model: bool = param(
        False, "Save only the weights in checkpoints (no optimiser state: cannot resume).", seed="save_only_model",
    )
    save_safetensors: Optional[bool] = param(
        None, "Older flag: save checkpoints as safetensors (always true: false is refused).", seed="save_safetensors",
        deprecated="transformers 5 always writes safetensors; true is accepted (no change), false is refused"
        " (.bin checkpoints can no longer be written)", seed_default=True,
    )
    # devices, precision, reproducibility
    use_cpu: bool = param(False, "Train on the CPU even when an accelerator is present.", seed="use_cpu")
    seed: int = param(42, "Random seed set at the start of training.", seed="seed", ge=0)
    data_seed: Optional[int] = param(None, "Seed of the data sampler (default: seed).", seed="data_seed", ge=0)
    full_determinism: bool = param(
        False, "Deterministic algorithms everywhere (slower; for bit-exact reruns).", seed="full_determinism",
    )
    disable_shuffling: bool = param(False, "Keep the training set in order.", seed="disable_shuffling")
    dataloader_num_workers: int = param(
        0, "Data-loader worker processes (0 = main process).", seed="dataloader_num_workers", ge=0, volatile=True,
    )
    bf16: bool = param(False, "bf16 mixed precision.", seed="bf16")
    fp16: bool = param(False, "fp16 mixed precision (GPU).", seed="fp16")
    fp16_opt_level: str = param(
        "O1", "Apex AMP optimisation level for fp16.", seed="fp16_opt_level", choices=("O0", "O1", "O2", "O3"),
    )
    tf32: Optional[bool] = param(None, "TF32 matmuls on Ampere+ GPUs (unset = torch default).", seed="tf32", gpu_only=True)
    pure_bf16: bool = param(False, "Train purely in bf16 (weights in bf16, no AMP).", seed="pure_bf16")
    # fp8 (llmpipe.training.fp8): accelerate's fp8 recipe on GPUs with compute capability 8.9 or newer
    fp8: bool = param(False, "fp8 mixed precision through accelerate (pt/sft; CUDA GPU with compute capability >= 8.9).",
                      seed="fp8", gpu_only=True)
    fp8_backend: str = param("auto", "fp8 backend: auto (torchao, else Transformer Engine), torchao, te; msamp is"
                             " refused (accelerate has no MS-AMP recipe).", seed="fp8_backend",
                             choices=("auto", "torchao", "te", "msamp"), gpu_only=True)
    fp8_enable_fsdp_float8_all_gather: bool = param(
        False, "torchao fp8 under FSDP2: all-gather the weights in float8.", seed="fp8_enable_fsdp_float8_all_gather",
        gpu_only=True,
    )
    # profiling (LLaMA-Factory's profiler arguments; llmpipe.training.profiling)
    enable_torch_profiler: bool = param(
        False, "Record the training steps with torch.profiler (traces for TensorBoard's profiler plugin).",
        seed="enable_torch_profiler", volatile=True,
    )
    profiler_output_dir: Optional[str] = param(
        None, "Folder of the profiler traces (unset = profiler/ in the train stage's checkpoints folder).",
        seed="profiler_output_dir", volatile=True,
    )
    profiler_wait_steps: int = param(1, "Profiler: steps skipped at the start of each cycle.",
                                     seed="profiler_wait_steps", ge=0, volatile=True)
    profiler_warmup_steps: int = param(1, "Profiler: warm-up steps of each cycle (traced, not recorded).",
                                       seed="profiler_warmup_steps", ge=0, volatile=True)
    profiler_active_steps: int = param(1, "Profiler: steps recorded in each cycle.", seed="profiler_active_steps",
                                       ge=1, volatile=True)
    profiler_repeat: int = param(1, "Profiler: cycles (0 = until training ends).", seed="profiler_repeat", ge=0,
                                 volatile=True)
    profiler_record_shapes: bool = param(True, "Profiler: record the shapes of the operators' inputs.",
                                         seed="profiler_record_shapes", volatile=True)
    profiler_profile_memory: bool = param(True, "Profiler: record tensor memory allocation.",
                                          seed="profiler_profile_memory", volatile=True)
    profiler_with_stack: bool = param(True, "Profiler: record the Python stack of each operator.",
                                      seed="profiler_with_stack", volatile=True)
    profile_modules: OptionalListFlag = param(
        None, "Forward time of the modules whose names match these patterns (fnmatch, comma-separated, e.g."
        " 'model.layers.*.mlp'): CUDA events on a GPU, the wall clock on the CPU; logged and written to"
        " module_times.json.", seed="profile_modules", list_sep=",", volatile=True,
    )
    callbacks: List[Any] = param(
        None, "Extension point: extra Trainer callbacks as {_target_: module.Class, ...}; only allowlisted"
        " modules are accepted.", default_factory=list,
    )


def _with_trainer_fields(core: type) -> type:
    """The train family: llmpipe's own fields, then every other field of transformers' training arguments
    (llmpipe.config.families.trainer_fields, generated from transformers' dataclass), typed the same way."""
    import dataclasses

    from llmpipe.config.families.trainer_fields import TrainerFields

    extra = [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata)
              if f.default_factory is dataclasses.MISSING else
              dataclasses.field(default_factory=f.default_factory, metadata=f.metadata))
             for f in dataclasses.fields(TrainerFields)]
    cls = dataclasses.make_dataclass("TrainConfig", extra, bases=(core,))
    cls.__module__ = __name__   # pickled by name (spawned ranks); its string annotations resolve in this module
    return cls


TrainConfig = _with_trainer_fields(TrainConfig)  # type: ignore[misc]
