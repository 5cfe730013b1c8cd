"""Sweep bookkeeping: every job of a multirun appends one row to ``<sweep dir>/results.csv``; at the end
of the sweep the table is printed with the best setting (and plotted)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from filelock import FileLock

RESULTS = "results.csv"
FIELDS = ["job", "overrides", "objective", "value", "stages_ran", "stages_cached", "metrics", "job_dir"]


def public_overrides(overrides: str) -> str:
    """A job's override string without its secrets: a secret key's override is left out (it is no sweep
    setting), and any known secret value elsewhere is redacted."""
    from llmpipe.secrets import redact_text, secret_paths

    secret = set(secret_paths())
    kept = [o for o in str(overrides or "").split(",")
            if o.split("=", 1)[0].strip().lstrip("+~").strip("'\"") not in secret]
    # a value with commas (a list) was split above; a dropped piece was a secret's own value
    return redact_text(",".join(kept))


def _redacted_row(row: dict[str, Any]) -> dict[str, Any]:
    from llmpipe.secrets import redact_text

    out = {}
    for k, v in row.items():
        if k == "overrides":
            v = public_overrides(v)
        elif isinstance(v, (dict, list)):
            v = json.loads(redact_text(json.dumps(v)))
        elif isinstance(v, str):
            v = redact_text(v)
        out[k] = v
    return out


def append_row(sweep_dir: Path, row: dict[str, Any]) -> None:
    row = _redacted_row(row)
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / RESULTS
    with FileLock(str(path) + ".lock"):
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in row.items()})


def read_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    path = Path(sweep_dir) / RESULTS
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def larger_is_better(objective: str, mode: str = "auto") -> bool:
    if mode in ("min", "max"):
        return mode == "max"
    name = objective.lower()
    return any(k in name for k in ("accurac", "margin", "reward", "bleu", "rouge", "exact", "score"))


def best(rows: list[dict[str, Any]], mode: str = "auto") -> dict[str, Any] | None:
    scored = []
    for r in rows:
        try:
            v = float(r["value"])
        except (TypeError, ValueError):
            continue
        if not math.isnan(v):
            scored.append((v, r))
    if not scored:
        return None
    maximize = larger_is_better(scored[0][1]["objective"], mode)
    return (max if maximize else min)(scored, key=lambda t: t[0])[1]


def summarize(sweep_dir: Path, mode: str = "auto") -> str:
    from llmpipe.secrets import redact_text

    return redact_text(_summarize(sweep_dir, mode))


def _summarize(sweep_dir: Path, mode: str) -> str:
    rows = read_rows(sweep_dir)
    if not rows:
        return ""
    lines = [f"llmpipe sweep results ({Path(sweep_dir) / RESULTS}):"]
    width = max(len(r["overrides"]) for r in rows)
    for r in sorted(rows, key=lambda r: int(r["job"]) if str(r["job"]).isdigit() else 0):
        lines.append(f"  job {r['job']:>3}  {r['overrides']:<{width}}  {r['objective']} = {r['value']}  "
                     f"(ran {r['stages_ran']}, cached {r['stages_cached']})")
    b = best(rows, mode)
    if b is not None:
        direction = "highest" if larger_is_better(b["objective"], mode) else "lowest"
        lines.append(f"  best ({direction} {b['objective']}): {b['overrides']} -> {b['value']}")
    try:
        picture = plot_results(sweep_dir, mode)
    except Exception as e:  # a missing plot must not hide the table
        picture, lines = None, lines + [f"  (no plot: {type(e).__name__}: {e})"]
    if picture is not None:
        lines.append(f"  plot: {picture}")
    return "\n".join(lines)


PLOT = "results.png"
SIDE_METRICS = ("eval_reward_accuracy", "eval_reward_margin", "reward_mean")   # shown beside the objective


def _side_metric(rows: list[dict[str, Any]], objective: str) -> tuple[str, list[float]] | None:
    """(name, per-row values) of the first preference metric every row recorded (other than the objective)."""
    for name in SIDE_METRICS:
        if name == objective:
            continue
        values = []
        for r in rows:
            found = [v for k, v in json.loads(r.get("metrics") or "{}").items() if k.endswith("/" + name)]
            values.append(float(found[-1]) if found else math.nan)
        if not all(math.isnan(v) for v in values):
            return name, values
    return None


def plot_results(sweep_dir: Path, mode: str = "auto") -> Path | None:
    """``results.png`` next to results.csv: each job's objective (best highlighted) and, where recorded, its
    held-out reward accuracy (or margin / mean reward)."""
    rows = sorted(read_rows(sweep_dir), key=lambda r: int(r["job"]) if str(r["job"]).isdigit() else 0)
    values = []
    for r in rows:
        try:
            values.append(float(r["value"]))
        except (TypeError, ValueError):
            values.append(math.nan)
    if not rows or all(math.isnan(v) for v in values):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = _side_metric(rows, rows[0]["objective"])
    b = best(rows, mode)
    parts = [str(r["overrides"] or "").split(",") for r in rows]
    shared = set.intersection(*(set(p) for p in parts)) if len(rows) > 1 else set()
    labels = [",".join(x for x in p if x not in shared) or f"job {r['job']}" for p, r in zip(parts, rows)]
    fig, axes = plt.subplots(1, 2 if side else 1, figsize=(11 if side else 7, 1.2 + 0.45 * len(rows)), dpi=100,
                             sharey=True, squeeze=False)
    colors = ["tab:orange" if b is not None and r is b else "tab:blue" for r in rows]
    ax = axes[0][0]
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    direction = "higher" if larger_is_better(rows[0]["objective"], mode) else "lower"
    ax.set_xlabel(f"{rows[0]['objective']} ({direction} is better; best in orange)")
    if side:
        axes[0][1].barh(range(len(rows)), side[1], color=colors)
        axes[0][1].set_xlabel(side[0])
    fig.suptitle(f"sweep {Path(sweep_dir).name}")
    fig.tight_layout()
    path = Path(sweep_dir) / PLOT
    fig.savefig(path)
    plt.close(fig)
    return path
