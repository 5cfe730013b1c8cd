"""The multimodal measure: llmpipe and LLaMA-Factory 0.9.5 fine-tune the same tiny VLM on the same images.

    python -m bench --only vlm [--runs 3]      (or: python -m bench.vlm --runs 3)

Assets (``bench/work/vlm/assets``, rebuilt when missing):
- ``model/``: llmpipe's ``builtin:tiny_vl`` (Qwen2-VL layout: a 2-block vision tower and its patch merger on
  ``builtin:tiny``), copied out of a scratch store as a plain local folder: config.json, model.safetensors,
  the tokenizer and the image processor (``Qwen2VLImageProcessorPil``). Both tools load this folder; LF's
  ``AutoProcessor`` builds the composite ``Qwen2VLProcessor`` from it (its video processor needs
  torchvision: hence ``bench/.lfvlmvenv``).
- ``data/``: llmpipe's bundled ``vlm_colours`` rows (256 rows, one 56x56 PNG each: 4 visual tokens, "What
  colour is the shape?" -> red/green/blue/black), the images written as files under ``images/`` and referenced
  by relative path, registered in one LF-format ``dataset_info.json`` (sharegpt with role/content tags and an
  ``images`` column) that both tools read.
- ``stats.json``: tokens per row under the qwen2_vl template (visual tokens included), from the model's own
  tokenizer and image processor.

Each round runs both tools back to back (llmpipe first in even rounds, LF first in odd ones), each cold: a
fresh llmpipe store, a fresh HF_HOME and output folder for LF. Results: ``bench/results/vlm/`` (results.json,
RESULTS.md) under ``threads-default/`` or ``threads<N>/`` (``--threads N`` sets OMP_NUM_THREADS for both).
"""
from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

from bench import lfvlmenv, machine, measure, tools, vlmconfigs

HERE = Path(__file__).resolve().parent
SYSTEM = "You are a helpful assistant."   # LF's qwen2_vl default system (llmpipe's qwen2_vl has the same)
GOAL = 1.2


def log(msg: str) -> None:
    print(f"bench vlm: {msg}", flush=True)


# ---- assets ------------------------------------------------------------------------------------------------
def build_assets(out: Path) -> dict:
    """Model folder, data folder and token statistics (see the module docstring)."""
    out = Path(out)
    if (out / "stats.json").is_file():
        return json.loads((out / "stats.json").read_text())
    from llmpipe.data import mm_synthetic
    from llmpipe.models.builtin import ensure_builtin

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # llmpipe's store (LLMPIPE_CACHE, or one beside the assets, kept): a first build of builtin:tiny takes minutes
    src = ensure_builtin("builtin:tiny_vl", os.environ.get("LLMPIPE_CACHE") or out.parent / "store")
    shutil.copytree(src, tmp / "model", ignore=shutil.ignore_patterns("_COMPLETE"))
    data = tmp / "data"
    (data / "images").mkdir(parents=True)
    rows = []
    for i, r in enumerate(mm_synthetic.rows(mm_synthetic.N_TRAIN, "train")):
        rel = []
        for j, url in enumerate(r["images"]):
            name = f"images/{i:04d}_{j}.png"
            (data / name).write_bytes(base64.b64decode(url.split(",", 1)[1]))
            rel.append(name)
        rows.append({"messages": r["messages"], "images": rel})
    (data / f"{vlmconfigs.DATASET}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (data / "dataset_info.json").write_text(json.dumps({vlmconfigs.DATASET: {
        "file_name": f"{vlmconfigs.DATASET}.json", "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}},
        indent=2) + "\n")
    stats = token_stats(tmp / "model", data, rows)
    (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return stats


def token_stats(model: Path, data: Path, rows: list[dict]) -> dict:
    """Tokens per row as both tools build it: qwen2_vl template, each <image> expanded to its visual tokens."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    proc = AutoImageProcessor.from_pretrained(str(model))
    merge = proc.merge_size ** 2
    lengths, visual = [], []
    for r in rows:
        grids = [proc(images=[Image.open(data / p).convert("RGB")], return_tensors="pt")["image_grid_thw"][0]
                 for p in r["images"]]
        n = [int(g.prod()) // merge for g in grids]
        user, answer = r["messages"][0]["content"], r["messages"][1]["content"]
        for k in n:
            user = user.replace("<image>", "<|vision_start|>" + "<|image_pad|>" * k + "<|vision_end|>", 1)
        text = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                f"<|im_start|>assistant\n{answer}<|im_end|>\n")
        lengths.append(len(tok(text, add_special_tokens=False)["input_ids"]))
        visual.append(sum(n))
    return {"rows": len(rows), "tokens": sum(lengths), "mean_tokens_per_row": statistics.fmean(lengths),
            "min_len": min(lengths), "max_len": max(lengths), "visual_tokens_per_row": statistics.fmean(visual)}


# ---- runs --------------------------------------------------------------------------------------------------
def _fresh(p: Path) -> Path:
    shutil.rmtree(p, ignore_errors=True)
    p.mkdir(parents=True)
    return p


def thread_env(threads: int | None) -> dict:
    """OMP/MKL thread count for both tools' processes (None: torch's default, one per core)."""
    return {} if not threads else {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_llmpipe(assets: Path, d: Path, threads: int | None = None) -> dict:
    cmd = tools.llmpipe_cmd(vlmconfigs.llmpipe_overrides(assets / "model", assets / "data"), d / "job", d / "cache")
    rec = measure.run(cmd, d / "llmpipe.log", env=thread_env(threads))
    return {**rec, **(tools.llmpipe_result(d / "job") if rec["rc"] == 0 else {})}


def run_lf(assets: Path, d: Path, lf_venv: Path, threads: int | None = None) -> dict:
    y = vlmconfigs.write_lf_yaml(assets / "model", assets / "data", d / "lf-out", d / "lf.yaml")
    rec = measure.run(tools.lf_cmd(lf_venv, y), d / "lf.log", env={**tools.lf_env(d / "hf"), **thread_env(threads)},
                      cwd=d)
    return {**rec, **(tools.lf_result(d / "lf-out", vlmconfigs.BATCH) if rec["rc"] == 0 else {})}


def tokens_per_s(rec: dict, stats: dict) -> float | None:
    """The text bench's definition: E[tokens per row] x batch x steps / train_runtime (visual tokens counted)."""
    if rec.get("rc") != 0 or not rec.get("train_runtime"):
        return None
    return stats["mean_tokens_per_row"] * vlmconfigs.BATCH * rec["steps"] / rec["train_runtime"]


def loss_diff(a: dict, b: dict) -> dict:
    """Largest absolute and relative per-step difference of two loss curves ({step: loss}, keys as str or int)."""
    a = {int(k): v for k, v in a.items()}
    b = {int(k): v for k, v in b.items()}
    steps = sorted(set(a) & set(b))
    if not steps:
        return {"steps": 0, "max_abs": None, "max_rel": None}
    ab = [abs(a[s] - b[s]) for s in steps]
    rel = [abs(a[s] - b[s]) / max(abs(b[s]), 1e-12) for s in steps]
    worst = steps[ab.index(max(ab))]
    return {"steps": len(steps), "max_abs": max(ab), "max_rel": max(rel), "worst_step": worst}


def summarize(records: list[dict], stats: dict) -> dict:
    """Medians, the ratio of medians, per-round ratios (alternating pairs) and loss agreement."""
    out: dict = {"per_round": []}
    by = {(r["tool"], r["rep"]): r for r in records}
    reps = sorted({r["rep"] for r in records})
    for tool in ("llmpipe", "lf"):
        recs = [r for r in records if r["tool"] == tool and r.get("rc") == 0]
        out[tool] = {"runs": len(recs),
                     "tokens_per_s": _med([tokens_per_s(r, stats) for r in recs]),
                     "best_tokens_per_s": max((t for t in (tokens_per_s(r, stats) for r in recs) if t), default=None),
                     "train_runtime_s": _med([r.get("train_runtime") for r in recs]),
                     "wall_s": _med([r["wall_s"] for r in recs]), "cpu_s": _med([r["cpu_s"] for r in recs]),
                     "peak_rss_mib": _med([r["peak_rss_mib"] for r in recs])}
    for rep in reps:
        a, b = by.get(("llmpipe", rep)), by.get(("lf", rep))
        if not a or not b or a.get("rc") != 0 or b.get("rc") != 0:
            continue
        ta, tb = tokens_per_s(a, stats), tokens_per_s(b, stats)
        out["per_round"].append({"rep": rep, "ratio": ta / tb, "wall_ratio": b["wall_s"] / a["wall_s"],
                                 "cpu_ratio": b["cpu_s"] / a["cpu_s"],
                                 "loss": loss_diff(a["loss"], b["loss"]),
                                 "load": [a["load_before"], a["load_after"], b["load_before"], b["load_after"]]})
    lm, lf = out["llmpipe"]["tokens_per_s"], out["lf"]["tokens_per_s"]
    out["ratio"] = lm / lf if lm and lf else None
    out["ratio_best"] = _ratio(out["llmpipe"]["best_tokens_per_s"], out["lf"]["best_tokens_per_s"])
    out["ratio_per_round_median"] = _med([p["ratio"] for p in out["per_round"]])
    rels = [p["loss"]["max_rel"] for p in out["per_round"] if p["loss"]["max_rel"] is not None]
    out["loss_max_rel"] = max(rels) if rels else None
    out["goal"] = GOAL
    out["met"] = None if out["ratio_per_round_median"] is None else out["ratio_per_round_median"] >= GOAL
    return out


def _med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


# ---- report ------------------------------------------------------------------------------------------------
def markdown(data: dict) -> str:
    s, st = data["summary"], data["assets"]
    lm, lf = s["llmpipe"], s["lf"]

    def f(v, p=2):
        return "—" if v is None else f"{v:.{p}f}"

    def e(v):
        return "—" if v is None else f"{v:.1e}"
    lines = [
        "# Multimodal benchmark: llmpipe vs LLaMA-Factory 0.9.5 (tiny Qwen2-VL)", "",
        (f"Run `{data['command']}` started {data['started']}, {data['runs']} round(s), "
        f"{data['machine']['cpu']}, {data['machine']['cores']} cores. 1-minute load average {data['load_before']} "
        f"before, {data['load_after']} after (per run below). Threads per process: {data.get('threads')}."), "",
        (f"- llmpipe: `.venv`, torch {data['llmpipe_versions'].get('torch')}, transformers "
        f"{data['llmpipe_versions'].get('transformers')}, PEFT {data['llmpipe_versions'].get('peft')}, "
        f"TRL {data['llmpipe_versions'].get('trl')}."),
        f"- LLaMA-Factory {data['lf']['versions'].get('llamafactory')}: `bench/.lfvlmvenv`, torch "
        f"{data['lf']['versions'].get('torch')} (CUDA {data['lf'].get('torch_cuda_build')} build, run on the CPU) "
        f"+ torchvision {data['lf']['versions'].get('torchvision')}, transformers "
        f"{data['lf']['versions'].get('transformers')}, PEFT {data['lf']['versions'].get('peft')}, TRL "
        f"{data['lf']['versions'].get('trl')}."
        + (f" Workaround: {'; '.join(data['lf']['workaround'])}." if data['lf'].get('workaround') else ""),
        (f"- Work: {st['rows']} rows, {st['visual_tokens_per_row']:.0f} visual tokens each, "
        f"{st['mean_tokens_per_row']:.2f} tokens per row on average (qwen2_vl template, default system); "
        f"batch {vlmconfigs.BATCH}, {vlmconfigs.STEPS} steps."), "",
        "| | llmpipe | LLaMA-Factory | ratio | goal |", "|---|---|---|---|---|",
        (f"| tokens/s (median) | {f(lm['tokens_per_s'], 0)} | {f(lf['tokens_per_s'], 0)} | {f(s['ratio'])}× | "
        f"≥ {GOAL}× {'met' if s['met'] else 'MISSED' if s['met'] is False else ''} |"),
        f"| tokens/s, median of per-round ratios | | | {f(s['ratio_per_round_median'])}× | |",
        (f"| tokens/s, fastest round of each (least disturbed by the load) | {f(lm.get('best_tokens_per_s'), 0)} | "
         f"{f(lf.get('best_tokens_per_s'), 0)} | {f(s.get('ratio_best'))}× | |"),
        f"| train_runtime (median) | {f(lm['train_runtime_s'])} s | {f(lf['train_runtime_s'])} s | | |",
        (f"| whole command wall (median) | {f(lm['wall_s'])} s | {f(lf['wall_s'])} s | "
        f"{f(_ratio(lf['wall_s'], lm['wall_s']))}× | |"),
        (f"| whole command CPU seconds (median) | {f(lm['cpu_s'])} | {f(lf['cpu_s'])} | "
        f"{f(_ratio(lf['cpu_s'], lm['cpu_s']))}× | |"),
        f"| peak RSS (median) | {f(lm['peak_rss_mib'], 0)} MiB | {f(lf['peak_rss_mib'], 0)} MiB | | |",
        f"| largest per-step loss difference (relative) | | | {e(s['loss_max_rel'])} | matching |", "",
        ("Per round (ratio = llmpipe tokens/s / LF tokens/s; load = 1-minute average before/after llmpipe, "
        "before/after LF):"), "",
        ("| round | order | ratio | wall ratio (LF/llmpipe) | CPU ratio (LF/llmpipe) | max abs loss diff | "
        "max rel loss diff | load |"),
        "|---|---|---|---|---|---|---|---|"]
    for p in s["per_round"]:
        order = "llmpipe, LF" if p["rep"] % 2 == 0 else "LF, llmpipe"
        lines.append(f"| {p['rep']} | {order} | {p['ratio']:.2f}× | {p['wall_ratio']:.2f}× | {p['cpu_ratio']:.2f}× | "
                     f"{e(p['loss']['max_abs'])} | {e(p['loss']['max_rel'])} | "
                     f"{' / '.join(str(x) for x in p['load'])} |")
    lines += ["", "Loss curves (round 0; step: llmpipe / LF):", "", "| step | llmpipe | LF | diff |",
              "|---|---|---|---|"]
    first = {r["tool"]: r for r in data["records"] if r["rep"] == 0 and r.get("rc") == 0}
    if "llmpipe" in first and "lf" in first:
        a = {int(k): v for k, v in first["llmpipe"]["loss"].items()}
        b = {int(k): v for k, v in first["lf"]["loss"].items()}
        for step in sorted(set(a) | set(b)):
            lines.append(f"| {step} | {f(a.get(step), 6)} | {f(b.get(step), 6)} | "
                         f"{e(a[step] - b[step]) if step in a and step in b else '—'} |")
    lines += ["", "Definitions: tokens/s = E[tokens per row, visual tokens included] × batch × steps / the "
              "Trainer's train_runtime (the text bench's definition; both tools train the same rows in the same "
              "order). Settings (bench/vlmconfigs.py): " + ", ".join(
                  f"`{k}={v}`" for k, (_, v) in vlmconfigs.SETTINGS.items()) + "."]
    if data.get("notes"):
        lines += ["", data["notes"]]
    return "\n".join(lines) + "\n"


def _ratio(a, b):
    return a / b if a and b else None


def _llmpipe_versions() -> dict:
    import importlib.metadata as m

    return {p: m.version(p) for p in ("torch", "transformers", "peft", "trl", "datasets")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.vlm", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "vlm")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default bench/results/vlm/threads-default or .../threads<N>)")
    ap.add_argument("--lf-venv", type=Path, default=lfvlmenv.DEFAULT_DIR)
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for both tools (default: torch's, one per core). On a shared, overloaded "
                    "machine 1 avoids the two threads waiting for each other on every small op")
    ap.add_argument("--notes", type=Path, default=HERE / "findings_vlm.md",
                    help="hand-written notes appended to RESULTS.md")
    ap.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from --out's results.json")
    a = ap.parse_args(argv)
    a.out = a.out or HERE / "results" / "vlm" / (f"threads{a.threads}" if a.threads else "threads-default")
    if a.render:
        data = json.loads((a.out / "results.json").read_text())
        data["summary"] = summarize(data["records"], data["assets"])
        data["notes"] = a.notes.read_text() if a.notes.is_file() else ""
        (a.out / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
        (a.out / "RESULTS.md").write_text(markdown(data))
        return 0
    started = datetime.datetime.now().isoformat(timespec="seconds")
    desc = machine.describe()
    log(f"machine: {desc['cpu']}, {desc['cores']} cores, load {desc['load_avg']}")
    assets = a.work / "assets"
    stats = build_assets(assets)
    lf_info = lfvlmenv.ensure(a.lf_venv, log)
    records: list[dict] = []
    common = {"command": "python -m bench.vlm " + " ".join(argv or []), "started": started,
              "runs": a.runs, "threads": a.threads or "torch default (one per core)", "machine": desc,
              "load_before": desc["load_avg"][0], "assets": stats,
              "lf": lf_info, "llmpipe_versions": _llmpipe_versions(),
              "settings": {k: v for k, (_, v) in vlmconfigs.SETTINGS.items()}}
    for rep in range(a.runs):
        order = ("llmpipe", "lf") if rep % 2 == 0 else ("lf", "llmpipe")
        for tool in order:
            d = _fresh(a.work / "runs" / f"r{rep}" / tool)
            rec = run_llmpipe(assets, d, a.threads) if tool == "llmpipe" else run_lf(assets, d, a.lf_venv, a.threads)
            rec.update(tool=tool, rep=rep, tokens_per_s=tokens_per_s(rec, stats))
            records.append(rec)
            log(f"[{rep}] {tool:<8} rc={rec['rc']} wall {rec['wall_s']:.1f}s train {rec.get('train_runtime')}s "
                f"tok/s {rec['tokens_per_s'] and round(rec['tokens_per_s'])} load {rec['load_before']}->"
                f"{rec['load_after']}")
        write(a.out, common, records, a.notes, final=rep + 1 == a.runs)
    return 0


def write(out: Path, common: dict, records: list, notes: Path, final: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {**common, "complete": final, "load_after": measure.load1(),
            "summary": summarize(records, common["assets"]), "records": records,
            "notes": notes.read_text() if notes.is_file() else ""}
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (out / "RESULTS.md").write_text(markdown(data))
    log(f"results{'' if final else ' so far'}: {out / 'RESULTS.md'}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
