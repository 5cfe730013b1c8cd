"""The train family -> transformers TrainingArguments, including flags transformers 5 removed
(translated at validation time) and llmpipe's defaults for running on this machine."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def training_arguments(cfg: Any, output_dir: Path, *, cls=None, **extra: Any):
    """Build ``cls`` (TrainingArguments or a TRL config) from the typed config."""
    if cls is None:
        from transformers import TrainingArguments as cls  # noqa: N813
    t = cfg.train
    has_eval = extra.pop("has_eval", False)
    eval_strategy = t.eval_strategy if has_eval else "no"
    kw: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        lr_scheduler_type=t.lr_scheduler_type,
        lr_scheduler_kwargs=dict(t.lr_scheduler_kwargs or {}),
        warmup_steps=t.warmup_steps,
        optim=t.optim,
        weight_decay=t.weight_decay,
        adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2, adam_epsilon=t.adam_epsilon,
        max_grad_norm=t.max_grad_norm,
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps,
        logging_strategy=t.logging_strategy,
        logging_steps=t.logging_steps,
        save_strategy=t.save_strategy,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        save_only_model=t.save_only_model,
        seed=t.seed,
        data_seed=t.data_seed,
        full_determinism=t.full_determinism,
        bf16=bool(t.bf16),
        fp16=bool(t.fp16),
        tf32=t.tf32,
        use_cpu=bool(t.use_cpu) or not _cuda(),
        report_to=_report_to(t.report_to),
        run_name=t.run_name,
        log_level=t.log_level,
        log_level_replica=t.log_level_replica,
        dataloader_num_workers=t.dataloader_num_workers,
        load_best_model_at_end=t.load_best_model_at_end and has_eval,
        metric_for_best_model=t.metric_for_best_model,
        remove_unused_columns=False,
        activation_checkpointing=not cfg.model.disable_gradient_checkpointing   # transformers 5 name of
        and cfg.model.gradient_checkpointing == "full",   # attention/mlp: llmpipe.training.selective_gc
        activation_checkpointing_kwargs={"use_reentrant": bool(cfg.model.use_reentrant_gc)},  # gradient_checkpointing
        disable_tqdm=True,
    )
    if t.disable_shuffling:
        kw["train_sampling_strategy"] = "sequential"
    if t.compute_accuracy and t.stage in ("pt", "sft"):   # token accuracy; rm/dpo/kto pairs have no "labels"
        kw["label_names"] = ["labels"]   # a PEFT model's forward hides them; accuracy needs the labels back
    if cfg.model.use_unsloth_gc:   # Unsloth-style checkpointing: checkpointed activations wait on the CPU
        kw["activation_checkpointing_kwargs"] = {**kw["activation_checkpointing_kwargs"], "offload": True}
    if cfg.model.enable_liger_kernel:
        kw["use_liger_kernel"] = True    # the Trainer patches the model with Liger's fused kernels (GPU)
    if getattr(t, "include_effective_tokens_per_second", False):
        # transformers 5 dropped include_effective_tokens_per_second; its successor counts the non-padding input
        # tokens and logs num_input_tokens_seen and train_tokens_per_second (over those tokens) with every log.
        kw["include_num_input_tokens_seen"] = "non_padding"
    from llmpipe.training.launch_args import (
        launch_arguments,  # ranks spawned by llmpipe.launch: backend, DeepSpeed, FSDP
    )

    kw.update(launch_arguments(cfg))
    from llmpipe.config.families.trainer_fields import PASSTHROUGH, is_set

    for name in PASSTHROUGH:   # the rest of transformers' own fields, set under train.*: passed as written
        value = getattr(t, name, None)
        if is_set(value):
            kw[name] = dict(value) if isinstance(value, dict) else list(value) if isinstance(value, (list, tuple)) \
                else value
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if old in extra:   # callers may still use the deprecated names; the new ones would win silently
            kw[new] = extra.pop(old)
    kw.update(extra)
    return cls(**kw)


def _report_to(names: list[str]) -> Any:
    """train.report_to for TrainingArguments: "none", one tracker name ("all" included), or a list of them."""
    if not names or names == ["none"]:
        return "none"
    return names[0] if len(names) == 1 else list(names)
