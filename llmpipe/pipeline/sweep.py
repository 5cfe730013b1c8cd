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


def append_row(sweep_dir: Path, row: dict[str, Any]) -> None:
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
    return "\n".join(lines)
