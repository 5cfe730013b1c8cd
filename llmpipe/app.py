"""The task function behind ``python -m llmpipe``: validate, plan, run, record, return the objective."""
from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llmpipe.errors import UserError


def _hydra_job() -> tuple[Path | None, Path | None, int | None, str]:
    """(job dir, sweep dir or None, job number, override string) of the current Hydra job, if any."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except Exception:
        return None, None, None, ""
    job_dir = Path(hc.runtime.output_dir)
    multirun = str(hc.mode).endswith("MULTIRUN")
    sweep_dir = Path(hc.sweep.dir) if multirun else None
    return job_dir, sweep_dir, (hc.job.num if multirun else None), ",".join(hc.overrides.task)


def run_task(cfg: DictConfig) -> float | None:
    """Run a composed configuration; any error meant for users ends as its message and exit code."""
    from llmpipe.pipeline.runner import StageFailed

    started: list[bool] = []   # appended to once the first stage is about to run
    try:
        return _run(cfg, started)
    except StageFailed as e:
        if isinstance(e.cause, UserError):
            print(f"llmpipe: stage {e.node_id} failed: {e.cause}", file=sys.stderr, flush=True)
            raise SystemExit(e.cause.exit_code) from None
        raise
    except UserError as e:
        print(f"llmpipe: {e}", file=sys.stderr, flush=True)
        if not started:
            remove_job_dir()
        raise SystemExit(e.exit_code) from None
    except SystemExit as e:
        if not started and e.code == 2:   # a refusal (pre-flight, the store): nothing may be left behind
            remove_job_dir()
        raise




def remove_job_dir() -> None:
    """Remove the job folder Hydra made for a run that was refused before any stage ran (it holds only Hydra's
    config snapshots and an empty log), and the empty folders above it inside the working directory, so that
    "nothing was run or written" is true. A folder holding anything else is left as it is."""
    import shutil

    job_dir, _, _, _ = _hydra_job()
    if job_dir is None or not job_dir.is_dir():
        return
    # what Hydra writes before the task function runs: its config snapshots and the job's log file
    if any(not (p.name == ".hydra" or p.suffix == ".log") for p in job_dir.iterdir()):
        return
    shutil.rmtree(job_dir, ignore_errors=True)
    cwd = Path.cwd().resolve()
    parent = job_dir.resolve().parent
    while parent != cwd and cwd in parent.parents:
        try:
            parent.rmdir()   # only when empty
        except OSError:
            break
        parent = parent.parent


def _run(cfg: DictConfig, started: list[bool]) -> float | None:
    from llmpipe import secrets
    from llmpipe.models.library_imports import warm_libraries
    from llmpipe.models.quiet import quiet_libraries
    from llmpipe.pipeline.lockfile import LockFile
    from llmpipe.pipeline.runner import StageFailed
    from llmpipe.pipeline.session import Session

    secret_env = secrets.take_from_config(cfg)
    session = Session.open(cfg, writable=True)
    validated, plan, run = session.validated, session.plan, session.obj.run
    for note in validated.notes:
        print(f"llmpipe: note: {note}")
    job_dir, sweep_dir, job_num, overrides = _hydra_job()
    lock = LockFile(None if run.dry_run else job_dir,
                    OmegaConf.to_container(secrets.redact_config(validated.cfg), resolve=True), validated.notes)
    runner = session.runner(lock, job_dir=job_dir, secret_env=secret_env)
    if run.dry_run:
        print("llmpipe: dry run - the plan (nothing is executed):")
        print(runner.describe())
        return None
    lock.set("data", {k: v for n in plan.nodes for k, v in n.identities.items() if k.startswith("data:")})
    runner.before_run = quiet_libraries   # imports torch and transformers: only when a stage really runs
    runner.while_waiting = functools.partial(warm_libraries, validated.obj)   # a sweep job waiting for another's stage
    from llmpipe.models.backend_gate import hide_unused

    hide_unused(validated.obj)   # hqq/torchao/bitsandbytes/deepspeed stay unimported unless this run uses them
    started.append(True)
    try:
        result = runner.execute()
    except StageFailed as e:
        lock.set("status", f"failed at {e.node_id}")
        raise
    objective = pick_objective(result.metrics, plan.ids(), run.objective)
    lock.set("objective", {"name": run.objective, "value": objective})
    lock.set("status", "complete")
    _summary(plan, result, lock, validated.obj, objective, job_dir)
    if sweep_dir is not None:
        from llmpipe.pipeline.sweep import append_row

        statuses = list(result.status.values())
        append_row(sweep_dir, {
            "job": job_num, "overrides": overrides, "objective": run.objective, "value": objective,
            "stages_ran": statuses.count("ran"), "stages_cached": statuses.count("cached"),
            "metrics": _flat_metrics(result.metrics), "job_dir": str(job_dir),
        })
    return objective


def pick_objective(metrics: dict[str, dict[str, Any]], order: list[str], name: str) -> float | None:
    for node_id in reversed(order):
        value = metrics.get(node_id, {}).get(name)
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            return float(value)
    return None


def _flat_metrics(metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {f"{node}/{k}": v for node, m in metrics.items() for k, v in m.items() if isinstance(v, (int, float))}


def _summary(plan, result, lock, obj, objective, job_dir: Path | None = None) -> None:
    print("llmpipe: summary")
    for node in plan.nodes:
        peak = getattr(result, "cuda_peak_gib", {}).get(node.id)
        memory = f"  peak CUDA {peak:.2f} GiB" if peak is not None else ""
        print(f"  {node.id:<14} {result.status[node.id]:<7} {result.seconds[node.id]:>8.2f}s  {result.outputs[node.id]}{memory}")
    from llmpipe.infer.model_ref import final_model

    final = final_model(plan, result.outputs)
    if final is not None:
        print(f"  model:     {final.adapters[-1] if final.adapters else final.model}")
    from llmpipe.pipeline.outputs import link_final

    linked = link_final(final, obj.train.output_dir, job_dir)   # train.output_dir receives the final model
    if linked is not None:
        print(f"  output:    {linked}")
    for node in plan.nodes:
        if node.kind.name == "predict":
            print(f"  predictions: {result.outputs[node.id] / 'generated_predictions.jsonl'}")
    plots = [p for p in (result.outputs[n.id] / "loss.png" for n in plan.nodes if n.kind.name == "train") if p.exists()]
    for p in plots:
        print(f"  loss plot: {p}")
    if lock.path:
        print(f"  lock file: {lock.path}")
    from llmpipe.models.quiet import log_files

    for path in log_files():
        print(f"  log file:  {path}   (everything the libraries logged and warned, in full)")
    if objective is not None:
        print(f"  objective: {obj.run.objective} = {objective:.4f}")
    if obj.run.sample:
        from llmpipe.stages.sample import show_sample

        report = show_sample(plan, result, obj)
        if report is not None:
            lock.set("sample", {"heldout_exact_match_before": report["before"],
                                "heldout_exact_match_after": report["after"], "heldout_examples": report["n"]})
