"""The runner: computes fingerprints, then executes the plan stage by stage, reusing published entries,
with one progress line per stage and a summary at the end."""
from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from llmpipe.config.typed import typed
from llmpipe.launch import cuda_memory
from llmpipe.launch.stage import distributed, launched, run_stage, spawn_stage
from llmpipe.pipeline.dag import Node, Plan
from llmpipe.pipeline.lockfile import LockFile
from llmpipe.pipeline.store import Store
from llmpipe.stages.base import StageContext


class StageFailed(Exception):
    def __init__(self, node_id: str, cause: BaseException):
        self.node_id, self.cause = node_id, cause
        super().__init__(f"stage {node_id} failed: {cause}")


@dataclass
class RunResult:
    outputs: dict[str, Path] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cuda_peak_gib: dict[str, float] = field(default_factory=dict)   # stages that ran on a GPU


def forced(node: Node, force: Any) -> bool:
    if node.kind.name == "load" and OmegaConf.select(node.cfg, "data.overwrite_cache", default=False):
        return True   # data.overwrite_cache: tokenize again even when the load stage is in the store
    if not force:
        return False
    if force is True:   # run.force=true: every stage
        return True
    if isinstance(force, (str, int, float)):
        force = [str(force)]
    names = set(force)
    return "all" in names or node.id in names or node.kind.name in names


def _short(fp: str) -> str:
    return fp[:10]


class Runner:
    def __init__(self, plan: Plan, store: Store, lock: LockFile, *, force: Any = None, job_dir: Path | None = None,
                 secret_env: dict[str, str] | None = None, out=None):
        self.plan, self.store, self.lock = plan, store, lock
        self.force, self.job_dir, self.secret_env = force, job_dir, secret_env or {}
        self.out = out   # None: the current sys.stdout at each message
        # called once, before the first stage that runs (not for a run whose stages all come from the store):
        # the entry point quiets the ML libraries there, which imports torch and transformers (seconds)
        self.before_run: Callable[[], Any] | None = None
        # called once, when this job first waits for a stage that another job is computing (a sweep's jobs
        # share their first stages): the entry point imports the libraries the stages will need meanwhile
        self.while_waiting: Callable[[], Any] | None = None

    def _starting(self) -> None:
        hook, self.before_run = self.before_run, None
        if hook is not None:
            hook()

    def _waiting(self, prefix: str, node: Node) -> None:
        self.say(f"{prefix}: another job is computing this stage ({_short(node.fingerprint)}); waiting")
        self._starting()
        hook, self.while_waiting = self.while_waiting, None
        if hook is not None:
            hook()

    def say(self, msg: str) -> None:
        print(msg, file=self.out if self.out is not None else sys.stdout, flush=True)

    def status_of(self, node: Node) -> str:
        if not node.kind.cached:
            return "run"
        if forced(node, self.force):
            return "run (forced)"
        return "cached" if self.store.entry(node.kind.name, node.fingerprint).complete() else "run"

    def describe(self) -> str:
        width = max(len(n.id) for n in self.plan.nodes)
        lines = []
        for i, n in enumerate(self.plan.nodes, 1):
            lines.append(f"  [{i}/{len(self.plan.nodes)}] {n.id:<{width}}  {self.status_of(n):<12} "
                         f"{_short(n.fingerprint)}  {n.label}")
        return "\n".join(lines)

    def execute(self) -> RunResult:
        result = RunResult()
        total = len(self.plan.nodes)
        self.say(f"llmpipe: {' -> '.join(self.plan.ids())}   (store: {self.store.root})")
        for i, node in enumerate(self.plan.nodes, 1):
            prefix = f"[{i}/{total}] {node.id}"
            t0 = time.time()
            try:
                status, path, info = self._one(node, result, prefix)
            except BaseException as e:
                seconds = round(time.time() - t0, 2)
                self.lock.stage(node.id, status="failed", fingerprint=node.fingerprint, seconds=seconds,
                                error=f"{type(e).__name__}: {e}", reads=node.reads, kind=node.kind.name)
                self.say(f"{prefix}: FAILED after {seconds}s: {type(e).__name__}: {e}")
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                raise StageFailed(node.id, e) from e
            seconds = round(time.time() - t0, 2)
            result.outputs[node.id], result.status[node.id] = path, status
            result.metrics[node.id] = dict(info.get("metrics") or {})
            result.seconds[node.id] = seconds
            peak = info.get("cuda_peak_gib") if status == "ran" else None
            extra = {"cuda_peak_gib": peak} if peak is not None else {}
            if peak is not None:
                result.cuda_peak_gib[node.id] = peak
            self.lock.stage(node.id, status=status, fingerprint=node.fingerprint, seconds=seconds, output=str(path),
                            kind=node.kind.name, reads=node.reads, inputs=node.identities or None,
                            metrics=result.metrics[node.id] or None, **extra)
            memory = f" (peak CUDA memory {peak:.2f} GiB)" if peak is not None else ""
            self.say(f"{prefix}: {status} in {seconds}s{memory} -> {path}")
        return result

    def _one(self, node: Node, result: RunResult, prefix: str) -> tuple[str, Path, dict]:
        entry = self.store.entry(node.kind.name, node.fingerprint)
        inputs = {role: result.outputs[uid] for role, uid in node.inputs.items()}
        step = self._follower_step(node, entry, inputs, prefix)   # nodes other than node 0 only lend ranks
        if step is not None:
            return step
        if not node.kind.cached:
            out = Path(OmegaConf.select(node.cfg, "export.dir")) if node.kind.name == "export" else entry.path
            ctx = self._context(node, inputs, out, entry.work)
            self._starting()
            self.say(f"{prefix}: running ({node.label})")
            cuda_memory.reset()
            info = cuda_memory.with_peak(node.kind.run(ctx) or {})
            return ("cached" if info.get("unchanged") else "ran"), out, info
        if forced(node, self.force) and entry.complete():
            with self.store.locked(entry):
                self.store.invalidate(entry)
        if entry.complete():
            return "cached", entry.path, entry.info()
        with self.store.locked(entry, on_wait=lambda: self._waiting(prefix, node)):
            if entry.complete():
                return "cached", entry.path, entry.info()
            self.store.prepare(entry)
            ctx = self._context(node, inputs, entry.staging, entry.work, waiters=lambda: self.store.waiting(entry))
            self._starting()
            self.say(f"{prefix}: running ({node.label}) {_short(node.fingerprint)}")
            t0 = time.time()
            cuda_memory.reset()
            info = cuda_memory.with_peak(run_stage(ctx, ctx.log))
            info = {**info, "node": node.id, "kind": node.kind.name, "version": node.kind.version,
                    "fingerprint": node.fingerprint, "reads": node.reads, "inputs": node.identities,
                    "seconds": round(time.time() - t0, 2)}
            self.store.publish(entry, info)
            return "ran", entry.path, info

    def _follower_step(self, node: Node, entry, inputs: dict[str, Path], prefix: str):
        """With several nodes every node runs the same llmpipe command; on a node with ``launch.node_rank > 0``
        this is the (status, path, info) of ``node``, or None to run it as usual (the stages before the
        distributed one). Such a node lends its ranks to the distributed stage and stops there: node 0 alone
        writes the store and the lock file (run.cache_root should be on a shared filesystem)."""
        if not launched(node.cfg) or int(OmegaConf.select(node.cfg, "launch.node_rank", default=0)) == 0:
            return None
        if self.lock is not None and self.lock.path is not None:
            self.say(f"llmpipe: node {node.cfg.launch.node_rank}: this node lends its ranks to the distributed "
                     "stage; node 0 writes the store and the lock file")
            self.lock.discard()
        earlier = self.plan.nodes[:self.plan.nodes.index(node)]
        if any(distributed(n) for n in earlier):
            return "skipped", entry.path, {}
        if not distributed(node):
            return None
        if entry.complete() and not forced(node, self.force):
            return "cached", entry.path, entry.info()
        ctx = self._context(node, inputs, entry.staging, entry.work)
        self._starting()
        self.say(f"{prefix}: joining node 0 ({node.label}) {node.fingerprint[:10]}")
        spawn_stage(ctx, ctx.log, leader=False)
        return "joined", entry.path, {}   # where node 0 publishes the outputs

    def _context(self, node: Node, inputs: dict[str, Path], out: Path, work: Path,
                 waiters: Callable[[], int] | None = None) -> StageContext:
        return StageContext(
            node_id=node.id, kind=node.kind, cfg=node.cfg, obj=typed(node.cfg), inputs=inputs,
            out=out, work=work, fingerprint=node.fingerprint, cache_root=self.store.root, job_dir=self.job_dir,
            secret_env=self.secret_env, log=lambda m, p=node.id: self.say(f"    {p}: {m}"),
            waiters=waiters or _nobody,
        )


def _nobody() -> int:
    return 0


def format_exception_brief(e: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(e), e)).strip()
