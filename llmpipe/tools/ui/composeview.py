"""The composer page: a recipe to start from, every parameter by family (help, type, default, allowed values),
and the live result of the pre-flight beside each field; the plan, YAML and command fill in from /api/compose."""
from __future__ import annotations

from typing import Any

from llmpipe.tools.ui.pages import e, layout


def _field(p: dict[str, Any]) -> str:
    fid = "f-" + p["path"].replace(".", "-")
    path = e(p["path"])
    if p["secret"]:
        control = (f'<input id="{fid}" disabled placeholder="secret: set it in the environment, never in a recipe">')
    elif p["choices"]:
        opts = p["choices"] + ([p["value"]] if p["value"] not in p["choices"] else [])
        control = (f'<select id="{fid}" name="{path}" data-initial="{e(p["value"])}">'
                   + "".join(f'<option{" selected" if o == p["value"] else ""}>{e(o)}</option>' for o in opts)
                   + "</select>")
    elif p["type"] == "bool" or (p["type"].startswith("bool") and p["value"] in ("true", "false")):
        opts = ["true", "false"] + (["null"] if "None" in p["type"] else [])
        control = (f'<select id="{fid}" name="{path}" data-initial="{e(p["value"])}">'
                   + "".join(f'<option{" selected" if o == p["value"] else ""}>{o}</option>' for o in opts)
                   + "</select>")
    else:
        control = (f'<input id="{fid}" name="{path}" value="{e(p["value"])}" data-initial="{e(p["value"])}" '
                   f'spellcheck="false" autocomplete="off">')
    marks = "".join(f'<span class="tag">{t}</span>' for t, on in (("volatile", p["volatile"]), ("GPU only", p["gpu_only"]),
                                                                  ("secret", p["secret"])) if on)
    allowed = f'allowed: {", ".join(p["choices"])}' if p["choices"] else (p["bounds"] and f'range: {p["bounds"]}')
    return (f'<div class="field" data-path="{path}"><label for="{fid}" class="mono">{path}</label>{control}'
            f'<div class="meta"><span class="mono">{e(p["type"])}</span> · default <span class="mono">'
            f'{e(p["default"])}</span>{" · " + e(allowed) if allowed else ""} {marks}</div>'
            f'<div class="help">{e(p["help"])}</div><div class="problem" data-for="{path}" hidden></div></div>')


def compose_page(recipes: list[str], recipe: str | None, families: list[dict[str, Any]]) -> str:
    options = '<option value="">(none: the defaults)</option>' + "".join(
        f'<option{" selected" if r == recipe else ""}>{e(r)}</option>' for r in recipes)
    groups = []
    for fam in families:
        groups.append(f'<details class="family" data-family="{e(fam["family"])}"><summary>{e(fam["family"])} '
                      f'<span class="muted small">{len(fam["params"])} parameters</span><span class="changed-count">'
                      f'</span></summary><div class="fields">{"".join(_field(p) for p in fam["params"])}</div></details>')
    body = (
        '<div class="titlebar"><h1>Compose a recipe</h1><span class="muted">checked by the same pre-flight as '
        '<code>python -m llmpipe</code>, as you type</span></div>'
        f'<form id="recipe-form" class="picker" method="get" action="/compose"><label>start from recipe '
        f'<select name="recipe" id="recipe">{options}</select></label>'
        '<input type="search" id="filter" placeholder="filter parameters (e.g. lora, beta, learning_rate)"></form>'
        '<div class="composer"><div class="form-col" id="fields">' + "".join(groups) + '</div>'
        '<aside class="result-col"><div id="check-state" class="check-state">checking…</div>'
        '<div id="global-problems"></div><h3>Changes</h3><ul id="changes" class="mono small"><li class="muted">none</li></ul>'
        '<h3>Stage graph</h3><div id="plan"></div><h3>Command</h3><pre id="command" class="cmd"></pre>'
        '<h3>Recipe YAML <button type="button" id="export">Export YAML</button></h3><pre id="yaml"></pre>'
        '</aside></div>')
    return layout("Compose", body, "compose")
