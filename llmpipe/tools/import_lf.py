"""``llmpipe-tools import-llamafactory cfg.yaml [-o repo/recipe/name.yaml]``: a flat LLaMA-Factory YAML
(LLaMA-Factory flags and the Hugging Face trainer arguments it accepts) -> an llmpipe recipe.

Every key goes to its config path (``lora_rank`` -> ``lora.rank``); ``no_<flag>: true`` becomes
``<path>: false``; old spellings of values are translated (``bitsandbytes`` -> ``bnb``); JSON strings of
dict fields are parsed. Secrets (``hf_hub_token``...) are never written: the user is told which
environment variable to set. Unknown keys stop the import (exit 2) with all of them listed. The recipe is
composed through Hydra before it is written, and every imported value is checked to land where it should.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from llmpipe.errors import UserError

EXIT_ERROR = 2
# LLaMA-Factory keys that have no llmpipe parameter because llmpipe does the job structurally.
NO_EQUIVALENT = {
    "overwrite_output_dir": "llmpipe never writes into an existing output: each stage publishes into the"
                            " content-addressed store and re-runs only when its inputs change",
    "resume_from_checkpoint": "llmpipe resumes from its stage store (a finished stage is reused, not re-run)",
}
# LLaMA-Factory's example DeepSpeed files -> llmpipe's launch options.
DEEPSPEED_OPTIONS = {"ds_z0_config": "deepspeed_z0", "ds_z2_config": "deepspeed_z2",
                     "ds_z3_config": "deepspeed_z3", "ds_z3_offload_config": "deepspeed_z3_offload"}


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="LLaMA-Factory YAML (flat keys, as for `llamafactory-cli train`)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="recipe file to write, ideally <repo>/recipe/<name>.yaml (default: print to stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


class ImportFailed(UserError):
    pass


def convert(data: dict, table: Any) -> tuple[dict[str, Any], dict[str, str], list[str], list[str], list[str]]:
    """``(values by path, source flag by path, group overrides, notes, warnings)``; raises ImportFailed."""
    from llmpipe.config.checks import normalize_value
    from llmpipe.secrets import SECRET_ENV

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    overrides: list[str] = []
    notes: list[str] = []
    warnings: list[str] = []
    errors: list[str] = []
    for key, value in data.items():
        key = str(key)
        if key in NO_EQUIVALENT:
            if value in (None, False, "") or (key == "overwrite_output_dir" and value is True):
                notes.append(f"{key}: {value} dropped: {NO_EQUIVALENT[key]}")
                continue
            errors.append(f"{key}: {value!r} has no llmpipe equivalent: {NO_EQUIVALENT[key]}")
            continue
        ref = table.lookup(key)
        if ref is None:
            near = closest(table, key)
            errors.append(f"{key}: unknown" + (f"; closest: {', '.join(near)}" if near else ""))
            continue
        p = ref.param
        if p.meta.secret:
            env = SECRET_ENV.get(p.path, (p.path.upper().replace(".", "_"),))[0]
            if value:
                warnings.append(f"{key} was NOT written to the recipe (secrets are not config): export {env}=<token>"
                                " in the environment before running")
            continue
        if ref.negated:
            if not isinstance(value, bool):
                errors.append(f"{key}: {value!r}: a no_ flag takes true or false")
                continue
            value = not value
            notes.append(f"{key}: {not value} -> {p.path}: {value}")
        if isinstance(value, str) and p.type.startswith(("dict", "list")) and value.strip()[:1] in "{[":
            try:
                value = json.loads(value)
            except ValueError as e:
                errors.append(f"{key}: {value!r} is not valid JSON ({e})")
                continue
        new = normalize_value(p.path, p.meta, value, notes)
        value = new
        if p.meta.deprecated:
            notes.append(f"{key} is an older flag, kept at {p.path}: {p.meta.deprecated}")
        if p.path in values and values[p.path] != value:
            errors.append(f"{key}: sets {p.path}={value!r}, but {origin[p.path]} already set it to {values[p.path]!r}")
            continue
        values[p.path] = value
        origin[p.path] = key
    if errors:
        raise ImportFailed("\n".join(errors))
    ds = values.get("launch.deepspeed")
    if isinstance(ds, str):
        stem = Path(ds).stem
        if stem in DEEPSPEED_OPTIONS and _option_exists("launch", DEEPSPEED_OPTIONS[stem]):
            overrides.append(f"override /launch: {DEEPSPEED_OPTIONS[stem]}")
            del values["launch.deepspeed"]
            notes.append(f"deepspeed: {ds} -> launch={DEEPSPEED_OPTIONS[stem]} (llmpipe's preset; LLaMA-Factory used"
                         " every visible GPU, set launch.nproc_per_node=<n> to match)")
        elif "launch.kind" not in values:
            values["launch.kind"] = "deepspeed"
            origin["launch.kind"] = "because deepspeed is set (LLaMA-Factory launched it with torchrun)"
    if values.get("launch.fsdp") and "launch.kind" not in values and _option_exists("launch", "fsdp"):
        overrides.append("override /launch: fsdp")
    return values, origin, overrides, notes, warnings


def closest(table: Any, key: str, n: int = 3) -> list[str]:
    """Close flags, one per parameter: ``lora_rank (lora.rank)``."""
    out: dict[str, str] = {}
    for s in table.suggest(key, n=3 * n):
        ref = table.lookup(s)
        if ref is None or ref.param.path in out:
            continue
        seed = ref.param.meta.seed
        out[ref.param.path] = f"{seed[0]} ({ref.param.path})" if seed else ref.param.path
    return list(out.values())[:n]


def _option_exists(group: str, name: str) -> bool:
    from llmpipe.resources import folder

    try:
        return (folder("conf") / group / f"{name}.yaml").is_file()
    except OSError:
        return False


def _missing_group_defaults(values: dict[str, Any]) -> list[str]:
    """``override /<family>: <option>`` for families the recipe sets but the primary config leaves unchosen."""
    from omegaconf import OmegaConf

    cfg = _compose([], return_hydra=True)
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default={}) or {}
    out = []
    for family in dict.fromkeys(path.split(".", 1)[0] for path in values):
        if family in choices and choices[family] is None:
            option = "hf" if family == "model" else "default"
            if _option_exists(family, option):
                out.append(f"override /{family}: {option}")
    return out


def _compose(overrides: list[str], return_hydra: bool = False):
    from llmpipe.config.compose import compose

    return compose(overrides, return_hydra_config=return_hydra, job_name="llmpipe_import")


def render(values: dict[str, Any], origin: dict[str, str], defaults: list[str], header: list[str]) -> str:
    import yaml

    from llmpipe.config.root import FAMILIES

    lines = ["# @package _global_"] + [f"# {h}" if h else "#" for h in header]
    if defaults:
        lines.append("defaults:")
        lines += [f"  - {d}" for d in defaults]
    by_family: dict[str, list[str]] = {}
    for path in values:
        by_family.setdefault(path.split(".", 1)[0], []).append(path)
    order = [f for f in FAMILIES if f in by_family] + [f for f in by_family if f not in FAMILIES]
    for family in order:
        lines.append(f"{family}:")
        for path in by_family[family]:
            leaf = path.split(".", 1)[1]
            block = yaml.safe_dump({leaf: values[path]}, default_flow_style=False, sort_keys=False,
                                   width=10_000, allow_unicode=True).rstrip("\n").splitlines()
            flag = origin.get(path, path)
            block[0] += f"  # {flag}" if flag not in (path, leaf) else ""
            lines += ["  " + b for b in block]
    return "\n".join(lines) + "\n"


def verify(text: str, values: dict[str, Any]) -> tuple[Any, list[str]]:
    """Compose the recipe from a temporary recipe repository: ``(config, mismatches)``; raises on failure."""
    from omegaconf import OmegaConf

    name = f"llmpipe_import_check_{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "recipe").mkdir()
        (Path(tmp) / "recipe" / f"{name}.yaml").write_text(text, encoding="utf-8")
        cfg = _compose([f"hydra.searchpath=[file://{tmp}]", f"+recipe={name}"])
    bad = []
    for path, want in values.items():
        got = OmegaConf.select(cfg, path, default=None, throw_on_missing=False)
        if OmegaConf.is_config(got):
            got = OmegaConf.to_container(got, resolve=False)
        if got != want:
            bad.append(f"{path}: wrote {want!r}, composed {got!r}")
    return cfg, bad


def _compose_error(e: Exception, origin: dict[str, str]) -> str:
    """One line naming the LLaMA-Factory flag behind a composition error where possible."""
    import re

    text = " ".join(str(e).split())
    text = re.sub(r"^In 'recipe/llmpipe_import_check_\d+': ", "", text)
    text = text.replace("ValidationError raised while composing config: ", "")
    m = re.search(r"full_key: ([\w.\[\]]+)", str(e))
    if m:
        key = m.group(1)
        text = text[:text.find("full_key:")].strip()
        flag = origin.get(key)
        return f"{flag} ({key}): {text}" if flag and flag != key else f"{key}: {text}"
    return text


def preflight_notes(cfg: Any) -> list[str]:
    """What the pre-flight would say about the imported recipe today (informational)."""
    from llmpipe.pipeline.preflight import validate

    try:
        _, problems = validate(cfg)
    except Exception as e:  # never fail an import on a validation crash
        return [f"the pre-flight could not be run here: {e!r}"]
    return [f"{p.key} = {p.value!r}: {p.message}" + (f" (fix: {p.fix})" if p.fix else "") for p in problems]


def run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from llmpipe.config.flags import flag_table

    src: Path = args.file
    if not src.is_file():
        print(f"llmpipe-tools import-llamafactory: {src}: no such file", file=sys.stderr)
        return EXIT_ERROR
    try:
        data = OmegaConf.to_container(OmegaConf.load(src), resolve=False)
    except Exception as e:
        print(f"llmpipe-tools import-llamafactory: {src} is not valid YAML: {e}", file=sys.stderr)
        return EXIT_ERROR
    if not isinstance(data, dict):
        print(f"llmpipe-tools import-llamafactory: {src}: expected a mapping of flags", file=sys.stderr)
        return EXIT_ERROR
    try:
        values, origin, overrides, notes, warnings = convert(data, flag_table())
    except ImportFailed as e:
        items = str(e).splitlines()
        print(f"llmpipe-tools import-llamafactory: {len(items)} key{'s' if len(items) != 1 else ''} of {src} cannot"
              " be imported (nothing was written):", file=sys.stderr)
        for line in items:
            print(f"  x {line}", file=sys.stderr)
        print("  (llmpipe-tools explain <flag> shows where a flag lives)", file=sys.stderr)
        return EXIT_ERROR
    out: Path | None = args.output
    name = (out or src).stem
    defaults = overrides + _missing_group_defaults(values)
    header = [f"Imported from LLaMA-Factory's {src.name} by `llmpipe-tools import-llamafactory`."]
    if out is not None and out.resolve().parent.name == "recipe":
        repo = out.resolve().parent.parent
        header.append(f"Run:  LLMPIPE_RECIPES={repo} python -m llmpipe +recipe={name}")
    else:
        header.append(f"Run:  python -m llmpipe +recipe={name}   (with this file at <repo>/recipe/{name}.yaml and"
                      " <repo> on LLMPIPE_RECIPES)")
    header.append("A trailing comment names the LLaMA-Factory flag where its name differs.")
    text = render(values, origin, defaults, header)
    try:
        cfg, mismatches = verify(text, values)
    except Exception as e:
        print(f"llmpipe-tools import-llamafactory: the recipe does not compose (nothing was written):\n"
              f"  x {_compose_error(e, origin)}", file=sys.stderr)
        return EXIT_ERROR
    if mismatches:
        print("llmpipe-tools import-llamafactory: the composed recipe differs from the input (nothing was written):",
              file=sys.stderr)
        for m in mismatches:
            print(f"  x {m}", file=sys.stderr)
        return EXIT_ERROR
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    for line in preflight_notes(cfg):
        print(f"pre-flight: {line}", file=sys.stderr)
    if out is None:
        sys.stdout.write(text)
        return 0
    if out.exists() and not args.force:
        print(f"llmpipe-tools import-llamafactory: {out} exists (use --force to overwrite)", file=sys.stderr)
        return EXIT_ERROR
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    if out.resolve().parent.name != "recipe":
        print(f"note: Hydra finds recipes as recipe/<name>.yaml under a recipe source; move it to"
              f" <repo>/recipe/{out.name} and put <repo> on LLMPIPE_RECIPES", file=sys.stderr)
    return 0
