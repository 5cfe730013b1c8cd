"""``llmpipe-tools templates``: the named chat templates (LLaMA-Factory's names) and their facts.

    llmpipe-tools templates                 one line per template: family, end of answer, thinking, tools
    llmpipe-tools templates qwen3           one template in full: slots, stop words, default system, Jinja
    llmpipe-tools templates --json          every template's facts as JSON
    llmpipe-tools templates --markdown      the table of docs/data.md ("Chat templates")
"""
from __future__ import annotations

import argparse
import json
import sys

from llmpipe.data import templates


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one template in full")
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    p.add_argument("--markdown", action="store_true", help="print the docs table (docs/data.md)")


def _short(text: str | None, width: int) -> str:
    if not text:
        return "-"
    one = text.replace("\n", "\\n")
    return one if len(one) <= width else one[:width - 1] + "…"


def _thinking(row: dict) -> str:
    return _short(row["thinking"], 40) if row["thinking"] else "-"


def markdown_table() -> str:
    """The templates table of docs/data.md, generated from the catalog."""
    head = "| template | family | end of answer | thinking (empty thought) | tool format | stop words | default system |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for name in templates.template_names():
        r = templates.template_summary(name)
        cells = [f"`{name}`", r["family"], _short(r["end_of_answer"], 30), _thinking(r), r["tool_format"] or "-",
                 ", ".join(_short(s, 20) for s in r["stop_words"]) or "-", _short(r["default_system"], 40)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _detail(name: str) -> str:
    t = templates.TEMPLATES[name]
    r = templates.template_summary(name)
    rows = [("family", t.family), ("prefix", json.dumps(t.prefix)), ("system", json.dumps(t.system)),
            ("user", json.dumps(t.user)), ("assistant", json.dumps(t.assistant_slot)),
            ("observation", json.dumps(t.observation_slot)), ("function", json.dumps(t.function_slot)),
            ("system placement", "inside the first user turn" if t.system_in_first_user else "its own turn"),
            ("default system", json.dumps(t.default_system) if t.default_system else "none"),
            ("stop words", ", ".join(map(json.dumps, t.stop_words)) or "none"),
            ("end of answer", r["end_of_answer"] + (" (no EOS in answers; one EOS after the last turn)"
                                                      if t.efficient_eos else "")),
            ("thinking", (f"thought words {json.dumps(t.thought_words[0])} … {json.dumps(t.thought_words[1])}; "
                          f"empty thought {json.dumps(t.empty_thought)}; data.enable_thinking acts")
             if t.reasoning else "none (answers rendered as they are; data.enable_thinking must stay true)"),
            ("tool format", t.tool_format or "none of LLaMA-Factory's named formats"),
            ("media plugin", t.mm_plugin), ("single tokens needed", ", ".join(t.markers) or "none")]
    width = max(len(k) for k, _ in rows)
    out = [f"{name}"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
    out += ["", "  Jinja put on the tokenizer:", "  " + templates.render_template(name)]
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    names = templates.template_names()
    if args.name:
        if args.name not in templates.TEMPLATES:
            close = templates.close_names(args.name)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            print(f"llmpipe-tools templates: {args.name!r} is not a named template{hint}", file=sys.stderr)
            return 2
        names = [args.name]
    if args.json:
        print(json.dumps([templates.template_summary(n) for n in names], ensure_ascii=False, indent=1))
        return 0
    if args.markdown:
        sys.stdout.write(markdown_table())
        return 0
    if args.name:
        sys.stdout.write(_detail(args.name))
        return 0
    rows = [templates.template_summary(n) for n in names]
    head = ("template", "family", "end of answer", "thinking", "tools", "stop words", "default system")
    table = [(r["name"], r["family"], _short(r["end_of_answer"], 16), "yes" if r["thinking"] else "-",
              r["tool_format"] or "-", _short(", ".join(r["stop_words"]), 28), _short(r["default_system"], 36))
             for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    for row in (head, *table):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"\n{len(rows)} templates (LLaMA-Factory's names). `llmpipe-tools templates NAME` shows one in full; "
          "data.template=NAME uses it, data.template=null the tokenizer's own chat template.")
    return 0
