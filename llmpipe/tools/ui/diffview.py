"""The diff page: two jobs' config values that changed, which stages therefore ran again (the lock-diff tool's
logic, tools.lockdiff.compare) and their metrics side by side."""
from __future__ import annotations

from typing import Any

from llmpipe.tools.lockdiff import compare
from llmpipe.tools.ui.pages import badge, e, fmt, layout, q
from llmpipe.tools.ui.runs import Job


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def config_changes(a: dict, b: dict) -> dict[str, tuple[Any, Any]]:
    fa, fb = flatten(a.get("config") or {}), flatten(b.get("config") or {})
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def picker(jobs: list[Job], a: str, b: str) -> str:
    def options(selected: str) -> str:
        return "".join(f'<option value="{e(j.key)}"{" selected" if j.key == selected else ""}>'
                       f'{e(j.created)} · {e(j.recipe)} · {e(" ".join(j.overrides))[:80]}</option>'
                       for j in jobs if j.lock)
    return (f'<form class="picker" method="get" action="/diff"><label>A <select name="a">{options(a)}</select></label>'
            f'<label>B <select name="b">{options(b)}</select></label><button>Compare</button></form>')


def diff_page(jobs: list[Job], ja: Job | None, jb: Job | None) -> str:
    body = '<h1>Diff two runs</h1>' + picker(jobs, ja.key if ja else "", jb.key if jb else "")
    if ja is None or jb is None or not ja.lock or not jb.lock:
        body += '<p class="muted">Pick two jobs that have a lock file (or tick two runs on the Runs page).</p>'
        return layout("Diff", body, "diff")
    la, lb = ja.lock, jb.lock
    changes = config_changes(la, lb)
    rows = "".join(f'<tr><td class="mono">{e(k)}</td><td class="mono old">{fmt(va)}</td><td class="mono new">{fmt(vb)}'
                   f'</td></tr>' for k, (va, vb) in changes.items())
    body += (f'<div class="cols"><div><h4>A</h4><a href="/run/{q(ja.key)}">{e(ja.recipe)}</a> '
             f'<span class="muted">{e(ja.created)}</span><div class="mono small">{e(" ".join(ja.overrides))}</div></div>'
             f'<div><h4>B</h4><a href="/run/{q(jb.key)}">{e(jb.recipe)}</a> <span class="muted">{e(jb.created)}</span>'
             f'<div class="mono small">{e(" ".join(jb.overrides))}</div></div></div>'
             f'<h2>Config values that changed <span class="muted small">({len(changes)})</span></h2>'
             + (f'<table class="data" id="config-diff"><thead><tr><th>key</th><th>A</th><th>B</th></tr></thead>'
                f'<tbody>{rows}</tbody></table>' if changes else '<p class="muted">The two configs are identical.</p>'))
    srows = []
    for d in compare(la, lb):
        if d["only_in"]:
            verdict = f'only in {d["only_in"]}'
        elif d["same"]:
            verdict = "same fingerprint: one result, computed once and reused from the store"
        else:
            verdict = "different fingerprint: ran again"
        why = "".join(f'<div class="mono small">{e(k)}: <span class="old">{fmt(va)}</span> → <span class="new">'
                      f'{fmt(vb)}</span></div>' for k, (va, vb) in d["reads"].items())
        if d["inputs"] is not None:
            why += '<div class="mono small">input identities changed</div>'
        srows.append(f'<tr class="{"same" if d["same"] else "changed"}"><td><b>{e(d["stage"])}</b></td>'
                     f'<td>{badge(d["status"][0] or "")}</td><td>{badge(d["status"][1] or "")}</td>'
                     f'<td>{e(verdict)}{why}</td></tr>')
    body += ('<h2>Stages</h2><table class="data" id="stage-diff"><thead><tr><th>stage</th><th>A</th><th>B</th>'
             f'<th>why</th></tr></thead><tbody>{"".join(srows)}</tbody></table>')
    body += metrics_table(la, lb)
    return layout("Diff", body, "diff")


def metrics_table(la: dict, lb: dict) -> str:
    rows = []
    oa, ob = la.get("objective") or {}, lb.get("objective") or {}
    if oa.get("name") or ob.get("name"):
        rows.append(("objective", oa.get("name") or ob.get("name"), oa.get("value"), ob.get("value")))
    for name in dict.fromkeys([*la.get("stages", {}), *lb.get("stages", {})]):
        ma = (la["stages"].get(name) or {}).get("metrics") or {}
        mb = (lb["stages"].get(name) or {}).get("metrics") or {}
        for k in dict.fromkeys([*ma, *mb]):
            rows.append((name, k, ma.get(k), mb.get(k)))
    for k in dict.fromkeys([*(la.get("sample") or {}), *(lb.get("sample") or {})]):
        rows.append(("sample", k, (la.get("sample") or {}).get(k), (lb.get("sample") or {}).get(k)))
    if not rows:
        return ""
    trs = "".join(f'<tr{" class=changed" if va != vb else ""}><td>{e(s)}</td><td class="mono">{e(k)}</td>'
                  f'<td class="num">{fmt(va)}</td><td class="num">{fmt(vb)}</td><td class="num">{_delta(va, vb)}</td></tr>'
                  for s, k, va, vb in rows)
    return ('<h2>Metrics side by side</h2><table class="data" id="metric-diff"><thead><tr><th>stage</th><th>metric</th>'
            f'<th class="num">A</th><th class="num">B</th><th class="num">B − A</th></tr></thead><tbody>{trs}</tbody></table>')


def _delta(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return f"{b - a:+.4g}" if b != a else ""
    return ""
