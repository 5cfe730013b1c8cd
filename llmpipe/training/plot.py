"""PNG plots of a training run's history: the training loss (and eval loss) against steps, and any other
series (PPO's mean reward and KL)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

# (label, steps, values, matplotlib format)
Series = tuple[str, Sequence[float], Sequence[float], str]


def plot_series(path: Path, series: list[Series], *, title: str = "", xlabel: str = "step",
                ylabel: str = "") -> Path | None:
    """One line per non-empty series, written to ``path``; None (no file) when every series is empty."""
    series = [s for s in series if len(s[1])]
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, xs, ys, fmt in series:
        if len(xs) < 3 and "o" not in fmt:
            fmt += "o"   # one or two points: a line alone would draw nothing visible
        ax.plot(xs, ys, fmt, label=label)
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_loss(history: list[dict], path: Path, title: str = "") -> Path | None:
    """The loss plot; None (no file) only when the history has no loss at all: see ``why_no_plot``."""
    def pick(key: str) -> tuple[list, list]:
        rows = [h for h in history if key in h and "step" in h]
        return [h["step"] for h in rows], [h[key] for h in rows]

    return plot_series(path, [("train loss", *pick("loss"), "-"), ("eval loss", *pick("eval_loss"), "o-")],
                       title=title, ylabel="loss")


def save_loss_plot(history: list[dict], path: Path, title: str, log) -> Path | None:
    """``plot_loss``, and a line saying why when there is nothing to plot (train.plot_loss never fails silently)."""
    try:
        out = plot_loss(history, path, title)
    except ImportError as e:
        log(f"loss plot: not made: matplotlib cannot be imported ({e}); pip install matplotlib")
        return None
    if out is None:
        log("loss plot: not made: the run logged no loss (no training step ran, or train.logging_steps was "
            "never reached and no final loss was recorded)")
    return out
