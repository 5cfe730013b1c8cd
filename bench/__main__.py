"""llmpipe vs LLaMA-Factory, side by side on the same work (what `make bench` runs).

    python -m bench                       # assets, LF venv, 3 rounds of everything, profile, results
    python -m bench --quick               # 1 round: a smoke test of the whole harness
    python -m bench --only sft,dpo --runs 5
    python -m bench --skip-lf             # reuse LLaMA-Factory's records from the last results.json
    python -m bench --device cuda         # on a GPU: Qwen2.5-0.5B-shaped random model in bf16
    python -m bench --only vlm            # the multimodal measure (bench/vlm.py; results in bench/results/vlm/)

Results: bench/results/{results.json,RESULTS.md,chart.png} (bench/results/gpu/ for --device cuda, .../quick/ for
--quick).
Scratch (assets, runs, logs): bench/work/; LLaMA-Factory's venv: bench/.lfvenv/ (both git-ignored).
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

from bench import analyze, lfenv, machine, measure, report, stats, tools
from bench.suite import GROUPS, Suite, group_of

HERE = Path(__file__).resolve().parent
DEFINITIONS = """\
- **tokens/s**: non-pad tokens per second of training = E[non-pad tokens per row] × batch × steps / the
  Trainer's `train_runtime`. SFT: the mean ChatML length of the 512 conversations; packed runs: real tokens
  per packed row (from llmpipe's packing report, and from LF's epoch fraction: rows = steps × batch / epoch);
  DPO: chosen + rejected tokens per pair (the reference pass is not counted again).
- **MFU**: tokens/s × FLOPs per token / the matmul peak measured in the same run. FLOPs per token =
  6·N + 12·L·d_attn·T (N = parameters of every matrix a token passes through — attention and MLP projections
  and lm_head, frozen or not —, L layers, d_attn = heads × head_dim, T = attention window: the example length,
  or the packed row for LF's cross-attending packing); DPO adds a reference forward, 2·N + 4·L·d_attn·T.
- **peak RSS**: `ru_maxrss` of the command (as `/usr/bin/time -v`); the whole process tree's summed peak is in
  results.json as `tree_rss_mib`. **wall**: the whole command, process start to exit.
- **reject**: wall time of a command whose configuration is wrong on purpose (each is the matched SFT config
  with one change). **start-up**: `python -m llmpipe --help` vs `llamafactory-cli train -h`.
- **cached re-run**: the matched SFT command run again on the same store (every stage reused).
- **2×2 sweep**: `python -m llmpipe -m ... lora.rank=8,16 pref.beta=0.1,0.5 hydra/launcher=joblib
  hydra.launcher.n_jobs=2` (DPO, 20 steps, two jobs at a time) vs the same four jobs as four separate commands,
  one after another, with separate stores.
- **DPO with the reference stage** (`dpo_ref`, llmpipe only): the DPO command with
  `pref.precompute_reference=true`: tokens/s of its train stage (no reference forward) against LF's DPO run;
  its wall includes the reference stage (the 80 of 256 pairs that its 20 steps read, scored once). `dpo_ref_new_beta`: the same command
  with `pref.beta=0.5` on the same store (load, adapt and the reference log-probs come from the store).
- **selective checkpointing** (`sft_gc_attention`, `sft_gc_mlp`, llmpipe only): the matched SFT command with
  `model.gradient_checkpointing=attention` / `mlp` (non-reentrant): tokens/s and peak RSS against llmpipe's
  matched run, which keeps full checkpointing.
- **matched settings**: batch 4, no accumulation, lr 1e-4 linear, no warm-up, fused AdamW, wd 0, clip 1.0,
  seed 42, LoRA r 8 / alpha 16 / dropout 0 on all 7 projections, cutoff 256, fp32, gradient checkpointing
  on (reentrant), 30 SFT / 20 DPO steps. The same batches in the same order; LF pads them to a multiple of 8
  and projects every position onto the vocabulary, llmpipe (its defaults) runs each batch as one row without
  padding (attention per example) and projects only labelled positions.
- **own settings**: LF's packing run (`packing: true`, cross-attending, checkpointing on); llmpipe's
  `data.neat_packing=true model.disable_gradient_checkpointing=true` (packed examples cannot see each other,
  no pad tokens, no recompute), its default optimizer.
- Runs whose 1-minute load average was above 1.5 when they started are flagged noisy in results.json.
"""


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="rounds per measure (default 3)")
    ap.add_argument("--sweep-runs", type=int, default=None,
                    help="rounds that include the sweep (default: all; its 8 DPO runs take longest)")
    ap.add_argument("--quick", action="store_true", help="one round, no profile: a smoke test of the harness")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}, "
                    "or vlm (the multimodal measure, bench/vlm.py: never part of the default set)")
    ap.add_argument("--skip-lf", action="store_true", help="reuse LLaMA-Factory's records from --lf-results")
    ap.add_argument("--no-lf", action="store_true", help="llmpipe alone, no LLaMA-Factory records (the GPU check: "
                    "its wheels cannot travel to the GPU machine)")
    ap.add_argument("--lf-results", type=Path, default=None,
                    help="results.json to take reused records from (default: the results folder's)")
    ap.add_argument("--reuse", default="", help="groups whose records are taken from --lf-results instead of "
                    "being measured again (e.g. sweep); they must not be in --only")
    ap.add_argument("--threads", type=int, default=None, help="vlm only: OMP_NUM_THREADS for both tools")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--work", type=Path, default=HERE / "work", help="scratch folder (default bench/work)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default bench/results[/gpu])")
    ap.add_argument("--lf-venv", type=Path, default=lfenv.DEFAULT_DIR)
    ap.add_argument("--render", action="store_true", help="only rewrite RESULTS.md and chart.png from the "
                    "records in results.json (after editing bench/findings.md or the analysis)")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of a missed target")
    a = ap.parse_args(argv)
    a.only = tuple(g.strip() for g in a.only.split(",") if g.strip())
    bad = [g for g in a.only if g not in GROUPS + ("vlm",)]
    if bad:
        ap.error(f"--only: unknown {', '.join(bad)}; choose from {', '.join(GROUPS)}, vlm")
    a.reuse = tuple(g.strip() for g in a.reuse.split(",") if g.strip())
    if set(a.reuse) - set(GROUPS) or set(a.reuse) & set(a.only):
        ap.error(f"--reuse: groups of {', '.join(GROUPS)} that are not in --only")
    if a.runs < 1:
        ap.error("--runs must be >= 1")
    if a.quick:
        a.runs, a.no_profile = 1, True
    if a.device == "cuda":
        a.only = tuple(g for g in a.only if g in ("sft", "dpo"))   # start-up/validation do not touch the GPU
    a.out = a.out or (HERE / "results" / ("gpu" if a.device == "cuda" else "") / ("quick" if a.quick else ""))
    a.lf_results = a.lf_results or a.out / "results.json"
    return a


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def _previous(path: Path, lf: bool, groups: tuple) -> tuple[list, dict]:
    """Records of an earlier results.json: LLaMA-Factory's (``lf``) and those of ``groups`` (both tools)."""
    if not path.is_file():
        raise SystemExit(f"bench: --skip-lf/--reuse need an earlier {path}; run once without them")
    old = json.loads(path.read_text())
    keep = [r for r in old["records"] if (lf and r["tool"] == "lf") or group_of(r["measure"]) in groups]
    for r in keep:
        r["reused_from"] = f"{path} ({old.get('started')})"
    return keep, old.get("lf", {})


def _profile(a, assets: Path, rows: list) -> str:
    from bench import hotspots as profile

    if a.no_profile or not any(r["met"] is False for r in rows):
        return ""
    log("profiling llmpipe (a target was missed)")
    d = a.work / "profile"
    shutil.rmtree(d, ignore_errors=True)   # a fresh store: a reused one would profile a cached re-run
    cmd = tools.llmpipe_cmd(tools.asset_overrides(assets, a.device) + tools.MATCHED, d / "job", d / "cache")
    train = profile.profile(d, cmd)
    start = profile.importtime(str(tools.llmpipe_python()), ["-m", "llmpipe", "--help"])
    return profile.render(train, start)


COMPUTED = ("rows", "curves", "noise", "tokens", "findings", "records", "load_after", "profile")


def publish(out: Path, common: dict, records: list, profile_text: str) -> list:
    """Analyse ``records`` and write results.json, RESULTS.md and chart.png into ``out``; the table rows."""
    device, a_stats = common["device"], common["assets"]
    common["peak"]["peak_flops"] = stats.best_peak(common["peak"])
    analyze.enrich(records, a_stats, common["model_config"], common["peak"]["peak_flops"], device)
    rows = analyze.table(records)
    findings = HERE / "findings.md"
    data = {**common, "load_after": common.get("load_after", measure.load1()), "rows": rows, "curves": analyze.curves(records),
            "noise": analyze.noise(records), "tokens": analyze.token_check(records, a_stats, device),
            "profile": profile_text,
            "findings": findings.read_text() if findings.is_file() and device == "cpu" and not common.get("quick")
            else "", "records": records}
    report.write_json(out / "results.json", data)
    report.chart(rows, out / "chart.png", f"llmpipe vs LLaMA-Factory ({device}, {common['machine']['cores']} cores)")
    (out / "RESULTS.md").write_text(report.markdown(data))
    log(f"results{'' if common.get('complete', True) else ' so far'}: {out / 'RESULTS.md'}")
    return rows


def render(out: Path) -> int:
    """Rewrite RESULTS.md / chart.png / the analysis in results.json from its records (nothing is run)."""
    path = out / "results.json"
    if not path.is_file():
        raise SystemExit(f"bench: --render needs {path}")
    old = json.loads(path.read_text())
    common = {k: v for k, v in old.items() if k not in COMPUTED}
    common["definitions"] = DEFINITIONS
    if "load_after" in old:   # the load when the run ended, not when it is rendered
        common["load_after"] = old["load_after"]
    cfg = HERE / "work" / "assets" / ("model_gpu" if common["device"] == "cuda" else "model") / "config.json"
    if "model_config" not in common:   # results written before the model's config was kept in them
        common["model_config"] = json.loads(cfg.read_text())
    prof = old.get("profile", "")
    raw = HERE / "work" / "profile" / "pyspy.txt"
    if prof.startswith("Wall-clock samples") and raw.is_file():   # re-group the kept samples (phases may change)
        from bench import hotspots

        startup = [ln for ln in prof.splitlines() if ln.startswith("`python -X importtime")]
        prof = "\n".join([hotspots.render({"phases": hotspots.summarize_raw(raw.read_text())}, None)] + startup[:1])
    print(report.markdown_table(publish(out, common, old["records"], prof)))
    return 0


def main(argv=None) -> int:
    a = parse(argv)
    if a.render:
        return render(a.out)
    if "vlm" in a.only:   # its own assets, venv (bench/.lfvlmvenv) and results folder
        from bench import vlm

        vlm.main(["--runs", str(a.runs)] + (["--threads", str(a.threads)] if a.threads else [])
                 + (["--out", str(a.out / "vlm")] if a.quick else []))   # --quick: bench/results/quick/vlm
        a.only = tuple(g for g in a.only if g != "vlm")
        if not a.only:
            return 0
    started = datetime.datetime.now().isoformat(timespec="seconds")
    if a.device == "cuda" and not _has_cuda():
        raise SystemExit("bench: --device cuda needs a CUDA GPU visible to llmpipe's torch (none found)")
    desc = machine.describe()
    log(f"machine: {desc['cpu']}, {desc['cores']} cores, load {desc['load_avg']}")
    assets = a.work / "assets"
    py = tools.llmpipe_python()
    import subprocess

    subprocess.run([str(py), "-m", "bench.assets", str(assets), "--device", a.device], check=True,
                   cwd=str(HERE.parent))
    asset_stats = json.loads((assets / "stats.json").read_text())
    lf_records, lf_info = ([], {})
    if a.skip_lf or a.reuse:
        lf_records, lf_info = _previous(a.lf_results, a.skip_lf, a.reuse)
    if a.no_lf:
        lf_info = {"skipped": "--no-lf: llmpipe alone (LLaMA-Factory's wheels do not fit the GPU machine's 64 MiB; "
                              "bench/gpu_wheels.py)"}
    elif not a.skip_lf:
        lf_info = lfenv.ensure(a.lf_venv, log)
    log("measuring the matmul peak")
    peak = machine.measure(py, a.device)
    t0 = time.time()
    suite = Suite(a.work / "runs", assets, a.lf_venv, runs=a.runs, only=a.only, skip_lf=a.skip_lf or a.no_lf,
                  device=a.device, sweep_runs=a.sweep_runs, log=log)
    model_cfg = json.loads((assets / ("model_gpu" if a.device == "cuda" else "model") / "config.json").read_text())
    common = {"command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
              "started": started, "runs": a.runs, "quick": a.quick, "device": a.device, "machine": desc, "peak": peak,
              "load_before": desc["load_avg"][0], "lf": lf_info, "definitions": DEFINITIONS,
              "reused": {"lf": a.skip_lf, "groups": list(a.reuse), "from": str(a.lf_results)},
              "model_config": model_cfg, "assets": {k: {kk: vv for kk, vv in v.items() if kk != "lengths"}
                                                     for k, v in asset_stats.items() if isinstance(v, dict)}}

    def write(records: list, final: bool) -> list:
        prof = _profile(a, assets, analyze.table(records + lf_records)) if final else ""
        return publish(a.out, {**common, "seconds": round(time.time() - t0, 1), "complete": final},
                       records + lf_records, prof)

    rows = write(suite.run(after_round=lambda recs: write(recs, False)), True)
    print(report.markdown_table(rows))
    return 0


def _has_cuda() -> bool:
    import subprocess

    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([str(tools.llmpipe_python()), "-c", code], capture_output=True).returncode == 0


if __name__ == "__main__":
    raise SystemExit(main())
