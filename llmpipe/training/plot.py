"""plot_loss: a PNG of the training loss (and eval loss) against steps."""
from __future__ import annotations

from pathlib import Path


def plot_loss(history: list[dict], path: Path, title: str = "") -> Path | None:
    steps = [h["step"] for h in history if "loss" in h]
    loss = [h["loss"] for h in history if "loss" in h]
    esteps = [h["step"] for h in history if "eval_loss" in h]
    eloss = [h["eval_loss"] for h in history if "eval_loss" in h]
    if not steps and not esteps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if steps:
        ax.plot(steps, loss, label="train loss")
    if esteps:
        ax.plot(esteps, eloss, "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
