"""`llmpipe-tools templates` lists the named templates, and docs/data.md carries its table."""
from __future__ import annotations

import json
from pathlib import Path

from llmpipe.data import templates
from llmpipe.tools import cli
from llmpipe.tools.templates_cmd import markdown_table

DOCS = Path(__file__).resolve().parents[3] / "docs" / "data.md"


def test_lists_every_template_with_its_facts(capsys):
    assert cli.main(["templates"]) == 0
    out = capsys.readouterr().out
    for name in ("qwen3_nothink", "qwen3_vl", "deepseek3", "moss_vl", "gpt_oss", "llama3"):
        assert f"\n{name} " in out
    assert cli.main(["templates", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(templates.TEMPLATES)
    assert rows["qwen3"]["thinking"] == "<think>\n\n</think>\n\n" and rows["qwen3_nothink"]["thinking"] is None
    assert rows["glm4"]["tool_format"] == "glm4" and rows["glm4"]["end_of_answer"] == "efficient_eos"
    assert rows["llama3"]["stop_words"] == ["<|eot_id|>", "<|eom_id|>"]


def test_one_template_in_full_and_unknown_names(capsys):
    assert cli.main(["templates", "deepseekr1"]) == 0
    out = capsys.readouterr().out
    assert "thought words" in out and "{% generation %}" in out
    assert cli.main(["templates", "qwen33"]) == 2
    assert "did you mean qwen3" in capsys.readouterr().err


def test_default_tool_format():
    assert templates.default_tool_format("qwen") == "qwen"
    assert templates.default_tool_format("glm4") == "glm4"
    assert templates.default_tool_format("llama3") == "llama3"
    assert templates.default_tool_format("chatml") == "default"
    assert templates.default_tool_format("nope") is None and templates.default_tool_format(None) is None


def test_docs_table_is_generated():
    text = DOCS.read_text(encoding="utf-8")
    begin = text.index("<!-- templates table: llmpipe-tools templates --markdown -->\n") + len(
        "<!-- templates table: llmpipe-tools templates --markdown -->\n")
    assert text[begin:text.index("<!-- end of templates table -->")] == markdown_table()


def test_unknown_name_suggests_close_names_never_null():
    from types import SimpleNamespace

    from llmpipe.data.rules import template_exists

    def fix(name):
        (p,) = list(template_exists(SimpleNamespace(data=SimpleNamespace(template=name)), {}))
        return p.fix

    assert fix("qwen3_nothin").startswith("data.template=qwen3_nothink")
    assert "data.template=llama3" in fix("llama_3")
    for name in ("qwen3_nothin", "llama_3", "zzzz"):
        assert "null" not in fix(name)
