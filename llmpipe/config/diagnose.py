"""After Hydra rejects a composition, explain the command-line overrides in llmpipe's terms."""
from __future__ import annotations

import sys

from llmpipe.config.flags import flag_table
from llmpipe.config.validate import owned_trainer_field

_TYPE_CHECKS = {
    "int": int,
    "float": float,
}


def _problems_in(args: list[str]) -> list[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    table = flag_table()
    lines: list[str] = []
    overrides = [a for a in args if not a.startswith("-") and "=" in a]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as e:
        return [f"an override could not be parsed: {str(e).splitlines()[0]}"]
    for o in parsed:
        key = o.key_or_group
        if key.startswith("hydra") or o.is_add() or "/" in key or key in _groups():
            continue
        p = table.by_path(key)
        if p is None:
            flag = table.by_flag(key)
            if flag is not None:
                lines.append(f"'{key}' is a LLaMA-Factory flag; in llmpipe it is '{flag.param.path}'"
                             + (" (set it to false)" if flag.negated else ""))
            elif owned_trainer_field(key) is not None:
                lines.append(f"'{key}' is a field of transformers' TrainingArguments that llmpipe sets itself: use "
                             f"{owned_trainer_field(key)}")
            else:
                near = table.suggest(key)
                lines.append(f"unknown key '{key}'" + (f"; did you mean: {', '.join(near)}" if near else ""))
            continue
        if o.is_sweep_override():
            continue
        value = o.value()
        base = p.type.replace(" | None", "")
        conv = _TYPE_CHECKS.get(base)
        if conv is not None and value is not None and isinstance(value, str):
            lines.append(f"{key} expects {p.type}, got '{value}'")
        elif base == "bool" and not isinstance(value, bool) and value is not None:
            lines.append(f"{key} expects true or false, got '{value}'")
    return lines


def _groups() -> set[str]:
    from llmpipe.config.root import FAMILIES

    return set(FAMILIES) | {"recipe"}


def explain_composition_failure(args: list[str]) -> None:
    from llmpipe.config.resolvers import REFUSED
    from llmpipe.secrets import redact_text

    lines = list(dict.fromkeys(REFUSED)) + _problems_in(args)   # a refused ${oc.env:...} first
    lines = [redact_text(line) for line in lines]   # an override's value may be a secret
    print("llmpipe: the configuration could not be composed (exit code 2; nothing was run or written).",
          file=sys.stderr)
    for line in lines:
        print(f"  x {line}", file=sys.stderr)
    print("  (llmpipe-tools explain <key> describes any parameter; `--info defaults-tree` shows the groups)",
          file=sys.stderr)
