"""One job, in full: its stages in plan order (ran, cached, failed, running or waiting, from the lock file and
the plan rebuilt from the job's own resolved config), the graph's edges, and the train stages' curves (the
published log history, or the newest checkpoint's while the stage runs)."""
from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

from llmpipe.tools.ui.runs import Job

CURVE_KEYS = ("loss", "eval_loss", "learning_rate", "grad_norm", "rewards/accuracies", "rewards/margins",
              "eval_rewards/accuracies", "eval_rewards/margins", "objective/kl")


_PLANS: dict[tuple[str, str], Any] = {}   # (job folder, lock's created) -> plan: built (and fingerprinted) once
_PLANS_KEPT = 64


def _plan_of(job: Job) -> Any | None:
    """The job's stage graph, from the resolved config its lock file records (None when it cannot be built:
    a config from another llmpipe version, say). A running job's plan is fingerprinted, once: its page polls."""
    from omegaconf import OmegaConf

    from llmpipe.pipeline.dag import build_plan

    lock = job.lock or {}
    key = (str(job.path), str(lock.get("created")))
    if key in _PLANS:
        return _PLANS[key]
    try:
        plan = build_plan(OmegaConf.create(lock.get("config") or {}))
    except Exception:   # noqa: BLE001 - the page then draws the recorded stages in a row
        plan = None
    if plan is not None and lock.get("status") == "running":
        _fingerprints(plan, lock)
    if len(_PLANS) >= _PLANS_KEPT:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[key] = plan
    return plan


def _fingerprints(plan: Any, lock: dict) -> None:
    """Fingerprints of a running job's stages not yet in its lock file (to find a running stage's checkpoints)."""
    from llmpipe.pipeline.fingerprint import compute_fingerprints

    root = ((lock.get("config") or {}).get("run") or {}).get("cache_root")
    if root:
        try:
            compute_fingerprints(plan, Path(root))
        except Exception:   # noqa: BLE001, S110 - a data file gone since: the running stage shows no curves
            pass


def stages(job: Job) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """([stage rows in plan order], [(from, to) edges]). A stage the lock file does not list yet is 'running'
    (the first such one, while the job runs) or 'waiting'."""
    lock = job.lock or {}
    recorded = dict(lock.get("stages") or {})
    plan = _plan_of(job) if lock else None
    rows, edges = [], []
    if plan is not None:
        running_job = lock.get("status") == "running"
        seen_running = False
        for node in plan.nodes:
            for up in dict.fromkeys(node.inputs.values()):
                edges.append((up, node.id))
            row = dict(recorded.pop(node.id, {}) or {})
            if not row:
                status = "waiting"
                if running_job and not seen_running:
                    status, seen_running = "running", True
                elif str(lock.get("status", "")).startswith("failed"):   # "failed at <stage>"
                    status = "not run"
                row = {"status": status, "fingerprint": getattr(node, "fingerprint", "") or ""}
            row.update(id=node.id, kind=node.kind.name, label=node.label)
            rows.append(row)
    for node_id, row in recorded.items():   # stages the rebuilt plan does not know
        rows.append({**row, "id": node_id, "kind": row.get("kind", node_id), "label": ""})
    if plan is None:
        edges = [(a["id"], b["id"]) for a, b in pairwise(rows)]
    return rows, edges


def _store_root(job: Job) -> Path | None:
    root = (((job.lock or {}).get("config") or {}).get("run") or {}).get("cache_root")
    return Path(root) if root else None


def _newest_checkpoint_history(work: Path) -> list[dict] | None:
    states = sorted(work.glob("checkpoints/checkpoint-*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.rsplit("-", 1)[1]) if p.parent.name.rsplit("-", 1)[1].isdigit() else -1)
    for path in reversed(states):
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("log_history") or []
        except (OSError, ValueError):
            continue
    return None


def history(job: Job, row: dict[str, Any]) -> tuple[list[dict], str]:
    """(log history, where it came from) of one train stage row."""
    out = row.get("output")
    if out:
        path = Path(out) / "log_history.json"
        try:
            return json.loads(path.read_text(encoding="utf-8")), str(path)
        except (OSError, ValueError):
            pass
    root, fp = _store_root(job), row.get("fingerprint")
    if row.get("status") in ("running", "failed") and root is not None and fp:
        work = root / row.get("kind", "train") / f"{fp}.work"
        found = _newest_checkpoint_history(work)
        if found is not None:
            return found, f"{work}/checkpoints (newest checkpoint; updates at each train.save_steps)"
    return [], ""


def curves(job: Job, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per train stage: {'stage', 'source', 'series': {key: {'x': steps, 'y': values}}}."""
    out = []
    for row in rows:
        if row.get("kind") not in ("train",):
            continue
        hist, source = history(job, row)
        series: dict[str, dict[str, list]] = {}
        for rec in hist:
            step = rec.get("step")
            if step is None:
                continue
            for key in CURVE_KEYS:
                value = rec.get(key)
                if isinstance(value, (int, float)):
                    s = series.setdefault(key, {"x": [], "y": []})
                    s["x"].append(step)
                    s["y"].append(value)
        out.append({"stage": row["id"], "source": source, "series": series})
    return out


def snapshot(job: Job) -> dict[str, Any]:
    """What the page's script polls while a job runs: status, stage rows, edges and curves."""
    rows, edges = stages(job)
    return {"status": job.status, "objective": job.objective, "stages": rows, "edges": edges,
            "curves": curves(job, rows)}
