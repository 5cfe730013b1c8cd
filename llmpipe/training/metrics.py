"""Training outputs beyond the loss: token-level accuracy at evaluation (train.compute_accuracy) and where the
experiment trackers of train.report_to write (TensorBoard honours train.logging_dir)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

IGNORE = -100


def preprocess_logits_for_metrics(logits, labels):
    """Keep only the predicted token ids (not the full logits) across the evaluation set."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.argmax(dim=-1)


def token_accuracy(predictions, labels) -> float:
    """Share of label tokens (labels != -100) whose next-token prediction is right."""
    import numpy as np

    preds, labels = np.asarray(predictions), np.asarray(labels)
    preds, labels = preds[:, :-1], labels[:, 1:]   # the logits at position t predict the token at t + 1
    mask = labels != IGNORE
    return float((preds[mask] == labels[mask]).mean()) if mask.any() else 0.0


def compute_accuracy(eval_pred) -> dict[str, float]:
    return {"accuracy": token_accuracy(eval_pred.predictions, eval_pred.label_ids)}


def trainer_kwargs(cfg: Any) -> dict[str, Any]:
    """Trainer keyword arguments for the configured evaluation metrics."""
    if not cfg.train.compute_accuracy:
        return {}
    return {"compute_metrics": compute_accuracy, "preprocess_logits_for_metrics": preprocess_logits_for_metrics}


def logging_dir(cfg: Any, default: Path, job_dir: Path | None) -> Path:
    """train.logging_dir (relative paths under the job directory), else ``default``."""
    if not cfg.train.logging_dir:
        return default
    path = Path(str(cfg.train.logging_dir)).expanduser()
    return path if path.is_absolute() else (job_dir or Path.cwd()) / path


def point_trackers(trainer, cfg: Any, default_dir: Path, job_dir: Path | None = None) -> list[str]:
    """Send TensorBoard's event files to train.logging_dir (or ``default_dir``); returns the trackers in use."""
    names = []
    for cb in trainer.callback_handler.callbacks:
        name = type(cb).__name__
        if name == "TensorBoardCallback":
            target = logging_dir(cfg, default_dir, job_dir)
            target.mkdir(parents=True, exist_ok=True)
            cb.logging_dir = str(target)
        if name == "SwanLabCallback":   # train.swanlab_*: llmpipe opens the run the callback then logs into
            from llmpipe.training.swanlab_run import open_run

            open_run(trainer, cfg, default_dir.parent / "swanlog")
        if name.endswith("Callback") and name not in ("ProgressCallback", "DefaultFlowCallback", "PrinterCallback"):
            names.append(name[: -len("Callback")])
    return names
