"""Pre-training and supervised fine-tuning of a causal LM with the transformers Trainer on the tokenized
datasets published by the load stage (input_ids / attention_mask / labels, prompt tokens masked)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmpipe.stages.base import StageContext
from llmpipe.stages.load import read_source


def load_datasets(load_dir: Path):
    from datasets import load_from_disk

    train = load_from_disk(str(load_dir / "train"))
    eval_ds = load_from_disk(str(load_dir / "eval")) if (load_dir / "eval").exists() else None
    return train, eval_ds


def load_saved_tokenizer(load_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(load_dir / "tokenizer"))


def prepare_model(ctx: StageContext):
    """The model to train: base (+ initial adapter for LoRA, + frozen layers for freeze)."""
    from llmpipe.models.loading import load_causal_lm

    model = load_causal_lm(read_source(ctx.input("load")), ctx.obj)
    if "adapt" in ctx.inputs:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(ctx.input("adapt") / "adapter"), is_trainable=True)
    elif ctx.obj.train.finetuning_type == "freeze":
        from llmpipe.models.freeze import apply_freeze

        apply_freeze(model, ctx.obj)
    if not ctx.obj.model.disable_gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    return model


def run_trainer(ctx: StageContext, trainer, eval_ds) -> dict[str, Any]:
    """Initial eval (remembered across resumes), train with resume, final eval; returns metrics."""
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    trainer.remove_callback(PrinterCallback)
    metrics: dict[str, Any] = {}
    initial_path = ctx.work / "initial_eval.json"
    if eval_ds is not None:
        if initial_path.exists():
            metrics["eval_loss_initial"] = json.loads(initial_path.read_text())["eval_loss"]
        else:
            metrics["eval_loss_initial"] = trainer.evaluate()["eval_loss"]
            initial_path.write_text(json.dumps({"eval_loss": metrics["eval_loss_initial"]}))
        ctx.log(f"held-out loss before training: {metrics['eval_loss_initial']:.4f}")
    ckpt_dir = Path(trainer.args.output_dir)
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last:
        ctx.log(f"resuming from {Path(last).name} (found in {ckpt_dir})")
    out = trainer.train(resume_from_checkpoint=last)
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


def save_outputs(ctx: StageContext, trainer, tokenizer, metrics: dict[str, Any]) -> None:
    model = trainer.model
    sub = "adapter" if ctx.obj.train.finetuning_type == "lora" else "model"
    model.save_pretrained(str(ctx.out / sub))
    tokenizer.save_pretrained(str(ctx.out / sub))
    history = trainer.state.log_history
    (ctx.out / "log_history.json").write_text(json.dumps(history, indent=1))
    (ctx.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if ctx.obj.train.plot_loss:
        from llmpipe.training.plot import plot_loss

        plot_loss(history, ctx.out / "loss.png", title=f"{ctx.node_id} ({ctx.obj.train.stage})")


def train_causal(ctx: StageContext) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer

    from llmpipe.training.args import training_arguments
    from llmpipe.training.progress import ProgressCallback

    load_dir = ctx.input("load")
    tokenizer = load_saved_tokenizer(load_dir)
    train_ds, eval_ds = load_datasets(load_dir)
    model = prepare_model(ctx)
    label_pad = -100 if ctx.obj.data.ignore_pad_token_for_loss else tokenizer.pad_token_id
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=label_pad, padding=True)
    args = training_arguments(ctx.obj, ctx.work / "checkpoints", has_eval=eval_ds is not None)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=collator, processing_class=tokenizer, callbacks=[ProgressCallback(ctx.log)])
    metrics = run_trainer(ctx, trainer, eval_ds)
    save_outputs(ctx, trainer, tokenizer, metrics)
    return {"metrics": metrics}
