"""Runs the benchmark's work with both tools, one process at a time, N rounds, and collects raw records.

Each round runs every selected measure with both tools back to back (llmpipe first in even rounds, LLaMA-
Factory first in odd ones, so a drift in the machine's load hits both alike). Every training run starts
cold: a fresh llmpipe store / a fresh HF_HOME for LLaMA-Factory, so both tokenize and load from scratch.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench import lfconfigs, measure, tools

GROUPS = ("startup", "reject", "sft", "dpo", "sweep")


def group_of(measure: str) -> str:
    """The --only group a measure belongs to."""
    if measure.startswith("reject:"):
        return "reject"
    return {"sft_matched": "sft", "sft_own": "sft", "cached_rerun": "sft", "sweep_2x2": "sweep",
            "sweep_independent": "sweep", "dpo_ref": "dpo", "dpo_ref_new_beta": "dpo", "sft_gc_attention": "sft",
            "sft_gc_mlp": "sft"}.get(measure, measure)


@dataclass
class Suite:
    work: Path
    assets: Path
    lf_venv: Path
    runs: int = 3
    only: tuple = GROUPS
    skip_lf: bool = False
    device: str = "cpu"
    sweep_runs: int | None = None   # rounds that include the sweep (its 8 DPO runs are the longest part)
    log: object = print
    records: list = field(default_factory=list)

    # ---- helpers ---------------------------------------------------------------------------------------
    def _dir(self, *parts) -> Path:
        p = self.work.joinpath(*parts)
        if p.exists():
            shutil.rmtree(p)
        p.mkdir(parents=True)
        return p

    def _record(self, measure_id: str, tool: str, rep: int, rec: dict, **extra) -> dict:
        rec = {"measure": measure_id, "tool": tool, "rep": rep, **rec, **extra}
        self.records.append(rec)
        flag = " NOISY" if rec.get("load_before", 0) > 1.5 else ""
        tail = f" train {rec['train_runtime']:.2f}s" if rec.get("train_runtime") else ""
        self.log(f"  [{rep}] {measure_id:<22} {tool:<8} rc={rec['rc']} wall {rec['wall_s']:.2f}s{tail} "
                 f"rss {rec['peak_rss_mib']:.0f} MiB load {rec['load_before']:.2f}{flag}")
        return rec

    def _both(self, rep: int, llm, lf) -> None:
        order = [llm, lf] if rep % 2 == 0 else [lf, llm]
        for fn in order:
            if fn is lf and self.skip_lf:
                continue
            fn()

    def _llm_base(self) -> list[str]:
        return tools.asset_overrides(self.assets, self.device)

    def _lf_yaml(self, name: str, out: Path, dest: Path, **over) -> Path:
        model = "model_gpu" if self.device == "cuda" else "model"
        extra = dict(tools.GPU_LF_EXTRA) if self.device == "cuda" else {}
        cfg = lfconfigs.training(name, self.assets, out, **extra, **over)
        cfg["model_name_or_path"] = str(self.assets / model)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(lfconfigs.to_yaml(cfg))
        return dest

    def _batch(self) -> int:
        return 8 if self.device == "cuda" else 4

    # ---- measures --------------------------------------------------------------------------------------
    def startup(self, rep: int) -> None:
        d = self._dir(f"r{rep}", "startup")
        self._both(rep, lambda: self._record("startup", "llmpipe", rep, measure.run(
                       [str(tools.llmpipe_python()), "-m", "llmpipe", "--help"], d / "llmpipe.log")),
                   lambda: self._record("startup", "lf", rep, measure.run(
                       [str(self.lf_venv / "bin" / "llamafactory-cli"), "train", "-h"], d / "lf.log",
                       env=tools.lf_env(d / "hf"))))

    def reject(self, rep: int) -> None:
        for name, override in tools.INVALID.items():
            d = self._dir(f"r{rep}", "reject", name)

            def llm(d=d, override=override, name=name):
                cmd = tools.llmpipe_cmd(self._llm_base() + tools.MATCHED + [override], d / "job", d / "cache")
                rec = self._record(f"reject:{name}", "llmpipe", rep, measure.run(cmd, d / "llmpipe.log"))
                rec["wrote"] = (d / "job").exists() or (d / "cache").exists()

            def lf(d=d, name=name):
                y = self._lf_yaml(name, d / "lf-out", d / "lf.yaml")
                self._record(f"reject:{name}", "lf", rep, measure.run(
                    tools.lf_cmd(self.lf_venv, y), d / "lf.log", env=tools.lf_env(d / "hf"), cwd=d))
            self._both(rep, llm, lf)

    def _train(self, rep: int, case: str, *, cached: bool = False) -> None:
        d = self._dir(f"r{rep}", case)

        def llm():
            cmd = tools.llmpipe_cmd(self._llm_base() + tools.TRAIN_CASES[case], d / "job", d / "cache")
            rec = measure.run(cmd, d / "llmpipe.log")
            extra = tools.llmpipe_result(d / "job") if rec["rc"] == 0 else {}
            self._record(case, "llmpipe", rep, rec, **extra)
            if cached and rec["rc"] == 0:   # the same command again: every stage must come from the store
                again = measure.run(cmd[:-1] + [f"hydra.run.dir={d / 'job-cached'}"], d / "llmpipe-cached.log")
                statuses = tools.llmpipe_statuses(d / "job-cached") if again["rc"] == 0 else {}
                self._record("cached_rerun", "llmpipe", rep, again, status=statuses)

        def lf():
            y = self._lf_yaml(tools.LF_CASES[case], d / "lf-out", d / "lf.yaml")
            rec = measure.run(tools.lf_cmd(self.lf_venv, y), d / "lf.log", env=tools.lf_env(d / "hf"), cwd=d)
            extra = tools.lf_result(d / "lf-out", self._batch()) if rec["rc"] == 0 else {}
            self._record(case, "lf", rep, rec, **extra)
        self._both(rep, llm, lf)

    def sft(self, rep: int) -> None:
        self._train(rep, "sft_matched", cached=True)
        self._train(rep, "sft_own")
        for case in tools.GC_MODES:
            self._llm_only(rep, case)

    def _llm_only(self, rep: int, case: str, *extra: str, job: str = "job", fresh: bool = True) -> dict:
        """One llmpipe command of ``case`` (``fresh``: in a new folder and store), recorded as ``case``."""
        d = self._dir(f"r{rep}", case) if fresh else self.work / f"r{rep}" / case
        cmd = tools.llmpipe_cmd(self._llm_base() + tools.TRAIN_CASES[case] + list(extra), d / job, d / "cache")
        rec = measure.run(cmd, d / f"{job}.log")
        return self._record(case, "llmpipe", rep, rec, **(tools.llmpipe_result(d / job) if rec["rc"] == 0 else {}))

    def dpo(self, rep: int) -> None:
        self._train(rep, "dpo")
        self._dpo_staged(rep)

    def _dpo_staged(self, rep: int) -> None:
        """llmpipe only (LF has no reference stage; it is compared with LF's DPO run of the same round): the DPO
        command with the reference stage, then the same command with a new beta on the same store."""
        self._llm_only(rep, "dpo_ref")
        again = self._llm_only(rep, "dpo_ref", "pref.beta=0.5", job="job-beta", fresh=False)
        again["measure"] = "dpo_ref_new_beta"

    def sweep(self, rep: int) -> None:
        """llmpipe's 2x2 sweep in one -m command against four independent llmpipe runs (nothing shared).
        LLaMA-Factory has no sweep: its four runs are four DPO runs (see bench.analyze)."""
        d = self._dir(f"r{rep}", "sweep")
        axes = [f"{k}={','.join(v)}" for k, v in tools.SWEEP.items()]
        base = self._llm_base() + tools.DPO
        rec = measure.run(tools.llmpipe_cmd(base + axes + tools.SWEEP_LAUNCHER, d / "multirun", d / "cache",
                                            multirun=True),
                          d / "sweep.log")
        self._record("sweep_2x2", "llmpipe", rep, rec)
        total = dict(rc=0, wall_s=0.0, cpu_s=0.0, peak_rss_mib=0.0, tree_rss_mib=0.0,
                     load_before=measure.load1(), runs=[])
        for i, (r, b) in enumerate((r, b) for r in tools.SWEEP["lora.rank"] for b in tools.SWEEP["pref.beta"]):
            one = measure.run(tools.llmpipe_cmd(base + [f"lora.rank={r}", f"pref.beta={b}"], d / f"job{i}",
                                                d / f"cache{i}"), d / f"one{i}.log")
            total["runs"].append(one)
            total["rc"] = total["rc"] or one["rc"]
            for k in ("wall_s", "cpu_s"):
                total[k] = round(total[k] + one[k], 3)
            for k in ("peak_rss_mib", "tree_rss_mib"):
                total[k] = max(total[k], one[k])
        total["load_after"] = measure.load1()
        self._record("sweep_independent", "llmpipe", rep, total)

    def run(self, after_round=None) -> list[dict]:
        """All rounds; ``after_round(records)`` is called after each one (results are written as they come)."""
        for rep in range(self.runs):
            self.log(f"round {rep + 1}/{self.runs}")
            for group in GROUPS:
                if group in self.only and not (group == "sweep" and self.sweep_runs is not None
                                               and rep >= self.sweep_runs):
                    getattr(self, group)(rep)
            if after_round is not None and rep + 1 < self.runs:
                after_round(list(self.records))
        return self.records
