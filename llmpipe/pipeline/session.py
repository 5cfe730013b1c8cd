"""The one session object of a configuration: validate -> plan -> store -> fingerprints.

``python -m llmpipe`` (llmpipe.app), ``llmpipe-tools plan``, and chat/serve (llmpipe.interactive) all open a
:class:`Session`; nothing else builds a store or computes fingerprints. No torch is imported here.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmpipe.pipeline.dag import Plan, build_plan, plan_problems
from llmpipe.pipeline.fingerprint import compute_fingerprints
from llmpipe.pipeline.lockfile import LockFile
from llmpipe.pipeline.preflight import Validated, validate
from llmpipe.pipeline.runner import Runner
from llmpipe.pipeline.store import Store
from llmpipe.problems import Problem, exit_with


def check(cfg: Any, *, inference: bool = False) -> tuple[Validated | None, list[Problem]]:
    """Every pre-flight problem of a composed configuration: environment interpolation, the rules and the
    remote-code opt-in, then what only the plan shows (chained steps, nothing to do, run.force). ``inference``:
    chat/serve need no stage, only a model to talk to. The CLI, chat, serve and the tools all come here."""
    from llmpipe.config.rules.safety import env_problems, remote_code_problems

    refused = env_problems(cfg)   # a refused ${oc.env:...} would stop the field checks with a traceback
    if refused:
        return None, refused
    validated, problems = validate(cfg)
    problems = list(problems) + remote_code_problems(cfg)
    if problems:
        return None, problems
    problems = plan_problems(validated.cfg)
    if inference:
        problems = [p for p in problems if not p.message.startswith("nothing to do")]
    if not problems:
        problems = force_problems(validated.obj.run.force, build_plan(validated.cfg))
    return (None, problems) if problems else (validated, [])


def force_problems(force: Any, plan: Plan) -> list[Problem]:
    """run.force names stages of this plan (node ids such as ``train.sft``, or kinds such as ``train``) or
    ``all``; a name that matches nothing would be ignored without a word."""
    if force is None or isinstance(force, bool):
        return []
    names = [force] if isinstance(force, (str, int, float)) else list(force)
    known = ["all", *dict.fromkeys([*plan.ids(), *(n.kind.name for n in plan.nodes)])]
    out = []
    for name in names:
        if str(name) not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            out.append(Problem("run.force", name, "is not a stage of this pipeline", ", ".join(known),
                               f"run.force=[{close[0]}]" if close else "run.force=[<stage>]", rule="run-force"))
    return out


@dataclass
class Session:
    validated: Validated
    plan: Plan
    store: Store

    @classmethod
    def open(cls, cfg: Any, *, inference: bool = False, writable: bool = False) -> "Session":
        """Validate and plan ``cfg`` (exit 2 with every problem), open its store and fingerprint the plan.
        ``writable``: the store must accept writes (a run); refused with exit 2 otherwise."""
        validated, problems = check(cfg, inference=inference)
        if problems:
            exit_with(problems)
        store = Store(validated.obj.run.cache_root)
        if writable:
            problem = store.check_writable()
            if problem:
                exit_with([Problem("run.cache_root", str(store.root), problem, "a writable folder",
                                   "run.cache_root=<writable folder> or set LLMPIPE_CACHE")])
        session = cls(validated, build_plan(validated.cfg), store)
        compute_fingerprints(session.plan, store.root)
        return session

    @property
    def obj(self) -> Any:
        """The typed, validated configuration (LlmpipeConfig)."""
        return self.validated.obj

    def runner(self, lock: LockFile | None = None, *, job_dir: Path | None = None,
               secret_env: dict[str, str] | None = None) -> Runner:
        return Runner(self.plan, self.store, lock, force=self.obj.run.force, job_dir=job_dir, secret_env=secret_env)

    def trained_model(self):
        """(ModelRef, note): the configuration's trained result in the store, else its base model."""
        from llmpipe.infer.model_ref import base_model, find_in_store

        ref = find_in_store(self.plan, self.store)
        if ref is not None:
            return ref, f"the configuration's trained result from the store ({self.store.root})"
        trains = any(n.kind.name == "train" for n in self.plan.nodes)
        why = ("this configuration's training has not run yet: `python -m llmpipe` with the same overrides runs it"
               if trains else "the configuration trains nothing")
        return base_model(self.obj, self.store.root), f"the base model ({why})"
