"""docs/parameters.md is generated from the schema and must not go stale."""
from __future__ import annotations

from pathlib import Path

from llmpipe.config.flags import flag_table
from llmpipe.tools.paramdoc import render_markdown

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "parameters.md"


def test_parameters_md_is_current():
    assert DOC.exists(), "docs/parameters.md is missing: run `make docs`"
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/parameters.md is stale (the family dataclasses changed): regenerate it with `make docs`"
    )


def test_every_parameter_and_seed_flag_is_documented():
    text = render_markdown()
    table = flag_table()
    for p in table.params():
        assert f"| `{p.path}` |" in text, p.path
    for flag in table.flags():
        assert f"| `{flag}` | `{table.by_flag(flag).param.path}`" in text, flag
    for line in (ROOT / "tests/fixtures/seed_flags.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith("no_"):
            assert f"`{line.split()[0]}`" in text, line
