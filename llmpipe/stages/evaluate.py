"""evaluate: the held-out loss of the final model of the run (or of the base model when nothing is trained)
on the load stage's tokenized eval split (``train.do_eval``), computed by the transformers Trainer exactly as
the train stage's ``eval_loss`` is; its perplexity; and with ``train.compute_accuracy`` the next-token
accuracy over the answer tokens (labels that are not -100). Image rows (a vision-language model) are batched
by the training collator, with their pixel values.

Publishes ``eval_results.json`` with ``eval_loss``, ``eval_perplexity`` (exp of eval_loss),
``eval_accuracy`` (train.compute_accuracy; a fraction in [0, 1]) and ``eval_samples``.
"""
from __future__ import annotations

import json
import math

from llmpipe.stages.base import StageContext

IGNORE = -100


def _argmax(logits, labels):
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def token_accuracy(eval_pred) -> dict:
    """Micro-averaged next-token accuracy: prediction at position t against the label at t + 1."""
    import numpy as np

    preds, labels = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
    preds, labels = preds[:, :-1], labels[:, 1:]
    mask = labels != IGNORE
    total = int(mask.sum())
    return {"accuracy": float((preds[mask] == labels[mask]).sum() / total) if total else 0.0}


def run(ctx: StageContext) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer
    from transformers.trainer_callback import PrinterCallback

    from llmpipe.data.errors import DataError
    from llmpipe.data.published import open_published
    from llmpipe.infer.hf_backend import load_model
    from llmpipe.infer.model_ref import from_stage_inputs
    from llmpipe.training.args import training_arguments
    from llmpipe.training.causal import load_saved_tokenizer
    from llmpipe.training.collators import collator_for, column_names

    obj = ctx.obj
    load_dir = ctx.input("load")
    _, eval_ds = open_published(load_dir)
    if eval_ds is None:
        raise DataError("evaluation needs a held-out split: set data.eval_dataset or data.val_size")
    tokenizer = load_saved_tokenizer(load_dir)
    ref = from_stage_inputs(obj, load_dir, ctx.inputs.get("model"))
    ctx.log(f"{ref.origin}: {ref.model}{' + ' + ', '.join(ref.adapters) if ref.adapters else ''}; "
            f"{len(eval_ds)} held-out rows")
    model = load_model(ref, obj)
    images = bool({"images", "audios"} & set(column_names(eval_ds)))   # media rows: pixel values / audio features
    if images:
        collator = collator_for(obj, tokenizer, eval_ds)
    else:
        label_pad = IGNORE if obj.data.ignore_pad_token_for_loss else tokenizer.pad_token_id
        collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=label_pad, padding=True)
    args = training_arguments(obj, ctx.work / "eval", has_eval=True, eval_strategy="no", bf16=False, fp16=False,
                              load_best_model_at_end=False, gradient_checkpointing=False, report_to="none")
    accuracy = bool(obj.train.compute_accuracy)
    trainer = Trainer(model=model, args=args, eval_dataset=eval_ds, data_collator=collator, processing_class=tokenizer,
                      compute_metrics=token_accuracy if accuracy else None,
                      preprocess_logits_for_metrics=_argmax if accuracy else None)
    trainer.remove_callback(PrinterCallback)
    found = trainer.evaluate()
    metrics = {"eval_loss": found["eval_loss"], "eval_perplexity": math.exp(min(found["eval_loss"], 700.0)),
               "eval_samples": len(eval_ds)}
    if accuracy:
        metrics["eval_accuracy"] = found["eval_accuracy"]
    (ctx.out / "eval_results.json").write_text(json.dumps(metrics, indent=2))
    ctx.log(", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return {"metrics": metrics}
