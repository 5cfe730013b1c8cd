"""The reference stage's computation: the reference model, the train stage's TRL trainer built around it with
``precompute_ref_log_probs=True`` (llmpipe.training.ref_logprobs.scoring_trainer), and the published columns.
See llmpipe.training.ref_logprobs for what is computed and how the train stage reads it."""
from __future__ import annotations

import json
import time
from typing import Any

from llmpipe.training.job import TrainJob
from llmpipe.training.ref_logprobs import INDEX, no_model_hash, scoring_trainer


def reference_model(job: TrainJob, tokenizer):
    """The model whose log-probs are the reference (see the module docstring)."""
    from llmpipe.data.published import read_source
    from llmpipe.models import patches
    from llmpipe.models.loading import load_causal_lm
    from llmpipe.training.reference import frozen, load_reference

    cfg = job.obj
    source = read_source(job.load_dir)
    ref = load_reference(cfg, source, tokenizer, job.cache_root, job.log)
    if ref is None:   # LoRA: the policy's base as training builds it, without the adapter
        model = load_causal_lm(source, cfg, training=True, log=job.log)
        ref = frozen(patches.training_patches(model, cfg, job.log))
        job.log("reference: the base model the adapter is trained on")
    return ref


def trainer_setup(cfg) -> tuple[type, type, dict[str, Any]]:
    """(trainer class, TRL config class, config keywords) of the train stage, with precomputed references."""
    if cfg.train.stage == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer, KTOConfig, {"beta": cfg.pref.beta, "precompute_ref_log_probs": True}
    from llmpipe.training.preference import trainer_setup as dpo_setup

    cls, config_cls, kw = dpo_setup(cfg)
    return cls, config_cls, {**kw, "precompute_ref_log_probs": True}


def compute(job: TrainJob) -> dict:
    """Score the train and eval rows with the reference model (of the train split, only the rows the run reads
    when it is shorter than an epoch: reference_plan.visit_steps); publish ``logps/<split>/`` and reference.json."""
    from llmpipe.data.published import open_published
    from llmpipe.training.causal import load_saved_tokenizer
    from llmpipe.training.pref_common import trl_config

    cfg = job.obj
    tokenizer = load_saved_tokenizer(job.load_dir)
    train_ds, eval_ds = open_published(job.load_dir)
    start = time.perf_counter()
    model = reference_model(job, tokenizer)
    cls, config_cls, kw = trainer_setup(cfg)
    batch = max(cfg.train.per_device_eval_batch_size, cfg.train.per_device_train_batch_size)
    args = trl_config(job, config_cls, eval_ds is not None, precompute_ref_batch_size=batch, **kw)
    # image rows (llmpipe.training.mm_preference): scored with images
    from llmpipe.training.mm_preference import adapt

    cls, train_ds, eval_ds, images = adapt(cls, args, tokenizer, job.load_dir, train_ds, eval_ds, job.log)
    from llmpipe.training.preference import fast_fused_head

    fast_fused_head(cfg, model, bool(images), job.log)   # the inline reference's levers: same log-probs
    loaded = time.perf_counter()
    from llmpipe.config.rules.reference_plan import visit_steps

    steps = visit_steps(cfg)
    from llmpipe.training.lm_head import trl_fused_head

    with no_model_hash(), trl_fused_head(cfg):   # the head as the train stage's trainer builds it
        trainer = scoring_trainer(cls, steps, job.waiters)(model=model, ref_model=None, args=args, train_dataset=train_ds,
                                              eval_dataset=eval_ds, processing_class=tokenizer, **images)
    scored = getattr(trainer, "scored", {})
    rows = dict(getattr(trainer, "visited", {}))
    of = {name: len(next(iter(cols.values()))) for name, cols in scored.items()}
    seconds = time.perf_counter() - loaded
    if trainer.accelerator.is_main_process:
        from datasets import Dataset

        for name, cols in scored.items():
            Dataset.from_dict(cols).save_to_disk(str(job.out / "logps" / name))
        (job.out / INDEX).write_text(json.dumps({"stage": cfg.train.stage, "rows": rows, "of": of,
                                                 "train_steps": steps if rows.get("train") != of.get("train") else None,
                                                 "columns": sorted({c for v in scored.values() for c in v})},
                                                indent=2))
    total = sum(rows.values())
    ranks = trainer.accelerator.num_processes
    shard = ""
    if ranks > 1:
        mine = sum(getattr(trainer, "local_rows", {}).values())
        shard = f", sharded over {ranks} ranks: {mine} scored on rank {trainer.accelerator.process_index}"
    part = "" if rows.get("train") == of.get("train") else \
        f"; the {rows['train']} of {of['train']} train rows that the first {steps} steps read"
    job.log(f"reference log-probs of {total} rows ({', '.join(f'{n} {r}' for n, r in rows.items())}{part}) "
            f"in {seconds:.1f} s (model load {loaded - start:.1f} s{shard})")
    return {"metrics": {"reference_rows": total, "reference_seconds": round(seconds, 3),
                        "reference_load_seconds": round(loaded - start, 3)}}
