"""Pre-training and supervised fine-tuning of a causal LM with the transformers Trainer on the tokenized
datasets published by the load stage (input_ids / attention_mask / labels, prompt tokens masked)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmpipe.config.train_stages import implements
from llmpipe.data.published import open_published, read_source
from llmpipe.training.job import TrainJob


def load_saved_tokenizer(load_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(load_dir / "tokenizer"))


def prepare_model(ctx: TrainJob):
    """The model to train: the run's base model (model.* loading options, quantization) with the fine-tuning
    method applied (LoRA from the adapt stage's initial adapter, freeze, full); see llmpipe.models.trainable."""
    from llmpipe.models.trainable import build
    from llmpipe.training.selective_gc import apply

    model = build(read_source(ctx.load_dir), ctx.obj, adapter_dir=ctx.initial_adapter, log=ctx.log)
    apply(model, ctx.obj, ctx.log)   # model.gradient_checkpointing=attention/mlp
    return model


def complete_checkpoint(ckpt_dir: Path, log=None) -> str | None:
    """The newest checkpoint that was fully written (a run killed mid-save leaves one without
    trainer_state.json, which the Trainer cannot resume from). ``log`` is told about each newer checkpoint that
    is passed over as incomplete, and where training starts instead."""
    if not ckpt_dir.is_dir():
        return None
    found, partial = [], []
    for p in ckpt_dir.glob("checkpoint-*"):
        step = p.name.split("-")[-1]
        if step.isdigit():
            (found if (p / "trainer_state.json").is_file() else partial).append((int(step), p))
    best = max(found) if found else None
    skipped = sorted(s for s in partial if best is None or s[0] > best[0])
    if skipped and log is not None:
        names = ", ".join(p.name for _, p in skipped)
        verb = "is" if len(skipped) == 1 else "are"
        then = f"resuming from {best[1].name} instead" if best else "starting over"
        log(f"{names} {verb} incomplete (no trainer_state.json; a save was cut short): {then}")
    return str(best[1]) if best else None


def run_trainer(ctx: TrainJob, trainer, eval_ds) -> dict[str, Any]:
    """Initial eval (remembered across resumes), train with resume, final eval; returns metrics."""
    from transformers.trainer_callback import PrinterCallback

    from llmpipe.training.initial_eval import defer_initial_eval

    trainer.remove_callback(PrinterCallback)
    metrics: dict[str, Any] = {}
    initial_path = ctx.work / "initial_eval.json"
    if eval_ds is not None:
        if initial_path.exists():
            metrics["eval_loss_initial"] = json.loads(initial_path.read_text())["eval_loss"]
        elif defer_initial_eval(trainer, initial_path, ctx.log):   # DeepSpeed: evaluated at the start of train()
            pass
        else:
            first = trainer.evaluate()   # all of it is kept: preference stages report their initial accuracy
            metrics["eval_loss_initial"] = first["eval_loss"]
            initial_path.write_text(json.dumps({k: v for k, v in first.items() if isinstance(v, (int, float))}))
        if "eval_loss_initial" in metrics:
            ctx.log(f"held-out loss before training: {metrics['eval_loss_initial']:.4f}")
    ckpt_dir = Path(trainer.args.output_dir)
    last = complete_checkpoint(ckpt_dir, ctx.log)
    if last:
        ctx.log(f"resuming from {Path(last).name} (found in {ckpt_dir})")
    import gc

    gc.freeze()   # the libraries' and the model's objects: the collector stops re-scanning them every step
    out = trainer.train(resume_from_checkpoint=last)
    if eval_ds is not None and "eval_loss_initial" not in metrics:
        metrics["eval_loss_initial"] = json.loads(initial_path.read_text())["eval_loss"]
    metrics["train_loss"] = out.training_loss
    metrics["global_step"] = out.global_step
    metrics["train_runtime"] = out.metrics.get("train_runtime")
    if eval_ds is not None:
        last_log = trainer.state.log_history[-2:] if trainer.state.log_history else []
        final = next((h for h in last_log if "eval_loss" in h and h.get("step") == out.global_step), None)
        final = final or trainer.evaluate()   # reuse the end-of-training evaluation when there was one
        metrics.update({k: v for k, v in final.items() if isinstance(v, (int, float)) and k.startswith("eval_")})
        ctx.log(f"held-out loss after training: {metrics['eval_loss']:.4f}")
    return metrics


def save_outputs(ctx: TrainJob, trainer, tokenizer, metrics: dict[str, Any]) -> None:
    from llmpipe.training.swanlab_run import finish_run

    finish_run()   # a SwanLab run's files in the output are complete before the stage is published
    model = trainer.model
    sub = "adapter" if ctx.obj.train.finetuning_type == "lora" else "model"
    from llmpipe.training.saving import is_spawned, save_gathered

    if is_spawned(trainer):   # every rank joins the save (ZeRO-3/FSDP gather weights); only rank 0 writes ctx.out
        if not save_gathered(trainer, ctx.out / sub):
            return
    else:
        from llmpipe.models.trainable import save

        save(model, ctx.out / sub, ctx.obj, log=ctx.log,
             initial_adapter=ctx.initial_adapter)
    tokenizer.save_pretrained(str(ctx.out / sub))
    history = trainer.state.log_history
    (ctx.out / "log_history.json").write_text(json.dumps(history, indent=1))
    (ctx.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if ctx.obj.train.plot_loss:
        from llmpipe.training.plot import save_loss_plot

        save_loss_plot(history, ctx.out / "loss.png", f"{ctx.name} ({ctx.obj.train.stage})", ctx.log)


@implements("pt")
@implements("sft")
def train_causal(ctx: TrainJob) -> dict:
    from transformers import Trainer

    from llmpipe.training.args import training_arguments
    from llmpipe.training.collators import collator_for, column_names, evaluate_each, packing_callbacks
    from llmpipe.training.fp8 import fp8_trainer_class
    from llmpipe.training.lm_head import label_only_head
    from llmpipe.training.metrics import point_trackers
    from llmpipe.training.metrics import trainer_kwargs as metric_kwargs
    from llmpipe.training.optimizers import trainer_class
    from llmpipe.training.padding_free import causal_collator
    from llmpipe.training.progress import trainer_callbacks
    from llmpipe.training.sft_losses import loss_trainer_class

    load_dir = ctx.load_dir
    tokenizer = load_saved_tokenizer(load_dir)
    train_ds, eval_ds = open_published(load_dir)
    model = prepare_model(ctx)
    collator = collator_for(ctx.obj, tokenizer, train_ds)  # neat packing: isolating collator
    collator = causal_collator(ctx.obj, model, train_ds, collator, ctx.log)  # train.padding_free
    checks = packing_callbacks(collator)
    collator = label_only_head(ctx.obj, model, collator, ctx.log,   # vocabulary projection of labelled tokens only
                               columns=column_names(train_ds))
    args = training_arguments(ctx.obj, ctx.work / "checkpoints", has_eval=eval_ds is not None)
    base = loss_trainer_class(Trainer, ctx.obj, ctx.log)   # train.use_dft/asft/eaft_loss
    base = fp8_trainer_class(base, ctx.obj, ctx.log)        # train.fp8: the accelerator's fp8 recipe
    trainer = trainer_class(base, ctx.obj, ctx.log)(  # GaLore/BAdam/Adam-mini/LoRA+ when configured
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
        processing_class=tokenizer, callbacks=[*trainer_callbacks(ctx.obj, ctx.log), *checks],
        **metric_kwargs(ctx.obj))
    point_trackers(trainer, ctx.obj, ctx.out / "tensorboard", ctx.job_dir)
    metrics = run_trainer(ctx, trainer, eval_ds)
    metrics.update(evaluate_each(trainer, load_dir, ctx.log))  # data.eval_on_each_dataset
    save_outputs(ctx, trainer, tokenizer, metrics)
    return {"metrics": metrics}
