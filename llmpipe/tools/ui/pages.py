"""The pages, rendered on the server as HTML (escaped everywhere); the small script in static/ui.js sorts
tables, draws the plotly curves from the JSON embedded here, polls a running job and drives the composer."""
from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

from llmpipe.tools.ui import graph
from llmpipe.tools.ui.runs import Job, Sweep

STATUS_CLASS = {"complete": "ok", "ran": "ok", "cached": "cached", "failed": "bad", "running": "run",
                "waiting": "idle", "not run": "idle", "no lock file": "idle", "will": "idle"}


def q(key: str) -> str:
    """A job's or sweep's address as a URL path (its folder names hold '+', ',' and '=')."""
    return escape(quote(str(key), safe="/"))


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def badge(status: str) -> str:
    cls = STATUS_CLASS.get(str(status).split(" ")[0], "idle")
    return f'<span class="badge b-{cls}">{e(status)}</span>'


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return e(value)


def layout(title: str, body: str, active: str = "", scripts: tuple[str, ...] = ()) -> str:
    nav = "".join(f'<a href="{href}" class="{"on" if key == active else ""}">{label}</a>'
                  for key, href, label in (("runs", "/", "Runs"), ("sweeps", "/sweeps", "Sweeps"),
                                           ("diff", "/diff", "Diff"), ("compose", "/compose", "Compose")))
    extra = "".join(f'<script src="/static/{s}"></script>' for s in scripts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)} · llmpipe</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="/static/ui.css">{extra}<script src="/static/ui.js" defer></script></head>'
            f'<body><header><span class="brand">llmpipe</span><nav>{nav}</nav></header>'
            f'<main>{body}</main></body></html>')


def _json_script(element_id: str, data: Any) -> str:
    text = json.dumps(data, default=str).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


# ------------------------------------------------------------------------------------------------ runs
def runs_page(jobs: list[Job], roots: list[str]) -> str:
    if not jobs:
        return layout("Runs", f'<h1>Runs</h1><p class="muted">No jobs found under {e(", ".join(roots))}. Run '
                      f'<code>python -m llmpipe +recipe=demo</code> here, or start the page with the folders to '
                      f'read: <code>llmpipe-tools ui path/to/outputs</code>.</p>', "runs")
    rows = []
    for j in jobs:
        obj = j.objective or {}
        value = obj.get("value")
        rows.append(
            f'<tr><td><input type="checkbox" class="pick" value="{e(j.key)}" aria-label="pick for diff"></td>'
            f'<td class="mono nowrap" data-sort="{e(j.created)}">{e(j.created)}</td>'
            f'<td><a href="/run/{q(j.key)}">{e(j.recipe)}</a></td><td>{badge(j.status)}</td>'
            f'<td class="num">{j.stage_count("ran")}</td><td class="num">{j.stage_count("cached")}</td>'
            f'<td class="num" data-sort="{e(value if value is not None else "")}">'
            f'{fmt(value) if value is not None else ""}</td><td class="muted">{e(obj.get("name") or "")}</td>'
            f'<td class="mono small">{e(" ".join(o for o in j.overrides if not o.lstrip("+").startswith("recipe=")))}'
            f'</td><td class="mono small muted folder" title="{e(j.path)}">{_folder_cell(j)}</td></tr>')
    body = (f'<div class="titlebar"><h1>Runs</h1><span class="muted">{len(jobs)} jobs under {e(", ".join(roots))}, '
            f'newest first</span><button id="compare" disabled>Compare two runs</button></div>'
            f'<table class="sortable data" id="runs"><thead><tr><th></th><th>started</th><th>recipe</th>'
            f'<th>status</th><th class="num">ran</th><th class="num">cached</th><th class="num">objective</th>'
            f'<th></th><th>overrides</th><th>folder</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return layout("Runs", body, "runs")


def _folder_cell(job: Job) -> str:
    """A job's folder, short: its own name, or for a sweep's job the sweep (linked) and the job's number."""
    sweep = job.path.parent
    if (sweep / "results.csv").is_file() or (sweep / "multirun.yaml").is_file():
        key = job.key.rsplit("/", 1)[0]
        number = job.path.name.split("_", 1)[0]
        return f'<a href="/sweep/{q(key)}">{e(sweep.name)}</a> job {e(number)}'
    return e(job.path.name)


def stage_table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        secs = r.get("seconds")
        err = f'<div class="error">{e(r["error"])}</div>' if r.get("error") else ""
        out.append(f'<tr data-stage="{e(r["id"])}"><td><b>{e(r["id"])}</b> <span class="muted">{e(r.get("label"))}</span>'
                   f'{err}</td><td>{badge(r.get("status", ""))}</td>'
                   f'<td class="num">{"" if secs is None else f"{secs:.2f}"}</td>'
                   f'<td class="mono small" title="{e(r.get("fingerprint"))}">{e(str(r.get("fingerprint") or "")[:16])}</td>'
                   f'<td class="mono small">{e(r.get("output") or "")}</td></tr>')
    return ('<table class="data"><thead><tr><th>stage</th><th>status</th><th class="num">seconds</th>'
            f'<th>fingerprint</th><th>output folder</th></tr></thead><tbody>{"".join(out)}</tbody></table>')


def stages_fragment(rows: list[dict[str, Any]], edges: list[tuple[str, str]]) -> str:
    return f'<div class="graph-wrap">{graph.svg(rows, edges)}</div>{stage_table(rows)}'


def _kv_table(items: dict[str, Any], cls: str = "") -> str:
    if not items:
        return '<p class="muted">none</p>'
    body = "".join(f'<tr><td class="mono">{e(k)}</td><td class="mono">{fmt(v)}</td></tr>' for k, v in items.items())
    return f'<table class="kv {cls}"><tbody>{body}</tbody></table>'


def lock_section(job: Job, rows: list[dict[str, Any]]) -> str:
    lock = job.lock or {}
    parts = []
    for r in rows:
        if not (r.get("reads") or r.get("inputs") or r.get("metrics")):
            continue
        reads = r.get("reads") or {}
        parts.append(
            f'<details class="stage-lock" data-stage="{e(r["id"])}"><summary><b>{e(r["id"])}</b> <span class="muted">read {len(reads)} values'
            f'{", inputs " + e(", ".join(r["inputs"])) if r.get("inputs") else ""}</span></summary>'
            f'<div class="cols"><div><h4>values read</h4>{_kv_table(reads)}</div><div><h4>input identities</h4>'
            f'{_kv_table(r.get("inputs") or {})}<h4>metrics</h4>{_kv_table(r.get("metrics") or {})}</div></div></details>')
    import yaml

    config = yaml.safe_dump(lock.get("config") or {}, sort_keys=False, default_flow_style=False)
    notes = "".join(f"<li>{e(n)}</li>" for n in lock.get("notes") or [])
    return (f'<h2>Lock file <span class="muted small mono">{e(job.path / "llmpipe.lock.yaml")}</span></h2>'
            f'{"".join(parts)}'
            f'<div class="cols"><div><h4>data identities</h4>{_kv_table(lock.get("data") or {})}</div>'
            f'<div><h4>package versions</h4>{_kv_table(lock.get("packages") or {})}</div></div>'
            + (f'<h4>notes</h4><ul>{notes}</ul>' if notes else "")
            + f'<details><summary>resolved config (secrets redacted)</summary><pre>{e(config)}</pre></details>')


def heldout_section(job: Job, rows: list[dict[str, Any]]) -> str:
    lock = job.lock or {}
    items: dict[str, Any] = {}
    for r in rows:
        for k, v in (r.get("metrics") or {}).items():
            if k.startswith(("eval_", "predict_", "heldout", "test_")) and not k.endswith(("runtime", "per_second",
                                                                                           "preparation_time")):
                items[f"{r['id']} · {k}"] = v
    sample = lock.get("sample") or {}
    for k, v in sample.items():
        items[f"sample · {k}"] = v
    obj = lock.get("objective") or {}
    if obj.get("name"):
        items[f"objective · {obj['name']}"] = obj.get("value")
    answers = ""
    for r in rows:
        if r.get("kind") == "predict" and r.get("output"):
            answers += _predictions(r["output"])
    if not items and not answers:
        return ""
    return f'<h2>Held-out metrics</h2>{_kv_table(items, "wide")}{answers}'


def _predictions(folder: str, limit: int = 5) -> str:
    from pathlib import Path

    path = Path(folder) / "generated_predictions.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()[:limit]
    except OSError:
        return ""
    rows = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        rows.append(f'<tr><td>{e(rec.get("prompt", ""))[-300:]}</td><td>{e(rec.get("label", ""))}</td>'
                    f'<td>{e(rec.get("predict", ""))}</td></tr>')
    return (f'<h4>sample answers <span class="muted small mono">{e(path)}</span></h4><table class="data"><thead><tr>'
            f'<th>prompt</th><th>expected</th><th>model</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def run_page(job: Job, snap: dict[str, Any], api: str) -> str:
    obj = job.objective or {}
    head = (f'<div class="titlebar"><h1>{e(job.recipe)}</h1><span id="run-status">{badge(job.status)}</span>'
            f'<span class="muted">{e(job.created)}</span>'
            + (f'<span class="objective">{e(obj.get("name"))} = <b>{fmt(obj.get("value"))}</b></span>'
               if obj.get("name") else "") + '</div>'
            f'<p class="mono small muted">{e(job.path)}<br>{e(" ".join(job.overrides))}</p>')
    failed = [r for r in snap["stages"] if r.get("status") == "failed"]
    error = "".join(f'<div class="error-box"><b>{e(r["id"])} failed:</b> {e(r.get("error"))}</div>' for r in failed)
    body = (head + error + f'<h2>Stages</h2><div id="stages">{stages_fragment(snap["stages"], snap["edges"])}</div>'
            '<h2>Curves</h2><div id="curves" class="curves"></div>'
            + heldout_section(job, snap["stages"]) + lock_section(job, snap["stages"])
            + _json_script("snapshot", {"api": api, "status": job.status, "curves": snap["curves"]}))
    return layout(job.recipe, body, "runs", scripts=("plotly.min.js",))


# ---------------------------------------------------------------------------------------------- sweeps
def sweeps_page(sweeps: list[Sweep], modes: list[str] | None = None) -> str:
    if not sweeps:
        return layout("Sweeps", '<h1>Sweeps</h1><p class="muted">No sweep found (a sweep folder holds results.csv: '
                      '<code>python -m llmpipe -m +recipe=demo lora.rank=4,8</code>).</p>', "sweeps")
    from llmpipe.pipeline.sweep import best

    rows = []
    for s, mode in zip(sweeps, modes or ["auto"] * len(sweeps)):
        b = best(s.rows, mode)
        rows.append(f'<tr><td><a href="/sweep/{q(s.key)}">{e(s.path.name)}</a></td><td class="mono small">{e(s.key)}</td>'
                    f'<td class="num">{len(s.rows)}</td><td>{e(s.rows[0]["objective"] if s.rows else "")}</td>'
                    f'<td class="num">{fmt(_float(b["value"])) if b else ""}</td>'
                    f'<td class="mono small">{e(b["overrides"] if b else "")}</td></tr>')
    body = ('<h1>Sweeps</h1><table class="data sortable"><thead><tr><th>sweep</th><th>folder</th><th class="num">jobs</th>'
            f'<th>objective</th><th class="num">best</th><th>best setting</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return layout("Sweeps", body, "sweeps")


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def sweep_params(rows: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[str]]:
    """Each row's overrides as {key: value}, and the keys whose value differs between rows (the swept ones)."""
    parsed = []
    for r in rows:
        kv = {}
        for part in str(r.get("overrides") or "").split(","):
            if "=" in part:
                k, v = part.split("=", 1)
                kv[k.strip()] = v.strip()
        parsed.append(kv)
    keys = list(dict.fromkeys(k for kv in parsed for k in kv))
    swept = [k for k in keys if len({kv.get(k) for kv in parsed}) > 1]
    return parsed, swept


def sweep_page(sweep: Sweep, job_keys: dict[str, str], mode: str = "auto") -> str:
    """``mode``: the jobs' run.objective_mode (min, max or auto), as the sweep's own summary picks the best."""
    from llmpipe.pipeline.sweep import best, larger_is_better

    rows = sorted(sweep.rows, key=lambda r: int(r["job"]) if str(r["job"]).isdigit() else 0)
    parsed, swept = sweep_params(rows)
    b = best(rows, mode)
    objective = rows[0]["objective"] if rows else ""
    metric_names = list(dict.fromkeys(k for r in rows for k in json.loads(r.get("metrics") or "{}")))[:4]
    head = "".join(f"<th>{e(k)}</th>" for k in swept)
    mhead = "".join(f'<th class="num">{e(m.split("/")[-1])}</th>' for m in metric_names)
    trs = []
    for r, kv in zip(rows, parsed):
        metrics = json.loads(r.get("metrics") or "{}")
        link = job_keys.get(r.get("job_dir") or "")
        job = f'<a href="/run/{q(link)}">job {e(r["job"])}</a>' if link else f'job {e(r["job"])}'
        cls = ' class="best"' if r is b else ""
        trs.append(f'<tr{cls}><td data-sort="{e(r["job"])}">{job}{" ★" if r is b else ""}</td>'
                   + "".join(f'<td class="mono">{e(kv.get(k))}</td>' for k in swept)
                   + f'<td class="num" data-sort="{e(r["value"])}">{fmt(_float(r["value"]))}</td>'
                   + "".join(f'<td class="num">{fmt(metrics.get(m))}</td>' for m in metric_names)
                   + f'<td class="num">{e(r.get("stages_ran"))}</td><td class="num">{e(r.get("stages_cached"))}</td></tr>')
    direction = "higher" if rows and larger_is_better(objective, mode) else "lower"
    best_kv = parsed[rows.index(b)] if b else {}
    setting = ", ".join(f"{k}={best_kv.get(k)}" for k in swept) or (b["overrides"] if b else "")
    best_line = (f'<p class="best-line">Best ({direction} {e(objective)} is better): job {e(b["job"])}, '
                 f'<b class="mono">{e(setting)}</b> → <b>{fmt(_float(b["value"]))}</b><br><span class="mono small '
                 f'muted">{e(b["overrides"])}</span></p>') if b else '<p class="muted">No job has a value yet.</p>'
    plots = {"objective": objective, "direction": direction, "params": swept,
             "points": [{"job": r["job"], "value": _float(r["value"]), "best": r is b,
                         "params": {k: kv.get(k) for k in swept}} for r, kv in zip(rows, parsed)]}
    body = (f'<div class="titlebar"><h1>Sweep {e(sweep.path.name)}</h1><span class="muted mono small">{e(sweep.path)}'
            f'</span></div>{best_line}<table class="data sortable" id="sweep"><thead><tr><th>job</th>{head}'
            f'<th class="num">{e(objective)}</th>{mhead}<th class="num">ran</th><th class="num">cached</th></tr></thead>'
            f'<tbody>{"".join(trs)}</tbody></table><h2>{e(objective)} against each swept parameter</h2>'
            f'<div id="sweep-plots" class="curves"></div>' + _json_script("sweep-data", plots))
    return layout(f"sweep {sweep.path.name}", body, "sweeps", scripts=("plotly.min.js",))
