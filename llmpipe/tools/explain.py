"""``llmpipe-tools explain NAME``: where a LLaMA-Factory flag lives in llmpipe, and what it means.

NAME is a seed flag (``lora_rank``, ``--lora_rank``, ``lora-rank``, ``no_use_fast_tokenizer``), a config
path (``lora.rank``) or a family (``lora``). The first output line is the config path alone, so scripts
can use ``$(llmpipe-tools explain lora_rank | head -1)``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_UNKNOWN = 2


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="seed flag (lora_rank, --no_use_fast_tokenizer), config path (lora.rank) or family (lora)")


def _show(value: Any) -> str:
    if value is None:
        return "null (unset)"
    if value == "???":
        return "??? (required: no default)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if value == "" or value.strip() != value else value
    if isinstance(value, (list, tuple)) and not value:
        return "[]"
    if isinstance(value, dict) and not value:
        return "{}"
    return str(value)


def _range(meta: Any) -> str:
    parts = []
    for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        v = getattr(meta, attr, None)
        if v is not None:
            parts.append(f"{op} {v}")
    return " and ".join(parts)


def _is_bool(param: Any) -> bool:
    return param.type.split(" ")[0] == "bool"


def describe(ref: Any) -> list[str]:
    """The explanation of a resolved flag (``FlagRef``) as lines; the first line is the config path."""
    p, meta = ref.param, ref.param.meta
    lines = [p.path]
    if ref.negated:
        lines.append(f"  --{ref.flag} means {p.path}=false  (the negation of --{ref.flag[3:]})")

    def row(label: str, text: str) -> None:
        lines.append(f"  {label + ':':<13}{text}")

    row("type", p.type)
    default = _show(p.default)
    if meta.seed_default is not None and meta.seed_default != p.default:
        default += f"  (the older parameter document: {_show(meta.seed_default)})"
    row("default", default)
    if meta.choices:
        row("allowed", ", ".join(_show(c) for c in meta.choices))
    if meta.value_aliases:
        row("old values", ", ".join(f"{k} -> {v}" for k, v in meta.value_aliases.items()) + " (translated)")
    rng = _range(meta)
    if rng:
        row("range", rng)
    if meta.seed:
        flags = [f"--{s}" for s in meta.seed]
        if _is_bool(p):
            flags += [f"--no_{s} (= false)" for s in meta.seed]
        row("seed flag" + ("s" if len(flags) > 1 else ""), ", ".join(flags))
    else:
        row("seed flag", "none (llmpipe's own parameter)")
    row("meaning", meta.help)
    if meta.deprecated:
        row("translation", f"older flag: {meta.deprecated}")
    if meta.secret:
        from llmpipe.secrets import SECRET_ENV

        env = " or ".join(SECRET_ENV.get(p.path, ())) or "the environment"
        row("secret", f"set it in the environment ({env}), not in a recipe; redacted from every saved file and log")
        first = SECRET_ENV.get(p.path, ("<VAR>",))[0]
        row("set it", f"export {first}=<token>   (then run python -m llmpipe as usual)")
        return lines
    if meta.volatile and not meta.secret:
        row("fingerprint", "not part of any stage fingerprint (changing it never re-runs a stage)")
    example = "false" if _is_bool(p) and ref.negated else _example(p)
    row("set it", f"python -m llmpipe {p.path}={example}")
    return lines


def _example(p: Any) -> str:
    d = p.default
    if d in (None, "???") or (isinstance(d, str) and d.startswith("${")):
        if p.meta.choices:
            return str(p.meta.choices[0])
        return "<" + p.type.replace(" | None", "") + ">"
    if isinstance(d, bool):
        return "true" if not d else "false"
    if isinstance(d, (list, dict)):
        return "'" + ("[a,b]" if isinstance(d, list) else "{k: v}") + "'"
    return _show(d) if not isinstance(d, str) or d.strip() else "''"


def family_lines(table: Any, family: str) -> list[str]:
    params = [p for p in table.params() if p.family == family]
    if not params:
        return []
    width = max(len(p.path) for p in params)
    lines = [family, f"  the {family}.* family ({len(params)} parameters; `llmpipe-tools explain <path>` for one):"]
    for p in params:
        flags = ",".join(p.meta.seed)
        lines.append(f"  {p.path:<{width}}  {p.type:<14} {p.meta.help}" + (f"  [--{flags}]" if flags else ""))
    return lines


def explain_one(name: str) -> tuple[list[str], str | None]:
    """``(lines, None)`` or ``([], error message)``."""
    from llmpipe.config.flags import flag_table

    table = flag_table()
    ref = table.lookup(name.strip())
    if ref is not None:
        return describe(ref), None
    fam = family_lines(table, name.strip().rstrip("."))
    if fam:
        return fam, None
    from llmpipe.tools.import_lf_keys import classify

    known = classify(name.strip().lstrip("-").replace("-", "_"))
    if known is not None:  # a LLaMA-Factory key without an llmpipe parameter of its own
        what, why = known
        return [f"(no llmpipe parameter: LLaMA-Factory's {name.strip()} is {what} by import-llamafactory)",
                f"  {'reason:' if what != 'translated' else 'becomes:':<13}{why}"], None
    near = table.suggest(name)
    hint = f"; closest: {', '.join(near)}" if near else "; no close match (llmpipe-tools docs lists every parameter)"
    return [], f"unknown parameter '{name}'{hint}"


def run(args: argparse.Namespace) -> int:
    rc = 0
    for i, name in enumerate(args.names):
        lines, err = explain_one(name)
        if err:
            print(err, file=sys.stderr)
            rc = EXIT_UNKNOWN
            continue
        if i:
            print()
        print("\n".join(lines))
    return rc
