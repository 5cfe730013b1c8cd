"""``llmpipe-tools import-llamafactory cfg.yaml [-o repo/recipe/name.yaml]``: a LLaMA-Factory YAML (v0: flat
LLaMA-Factory flags and the Hugging Face trainer arguments it accepts, for training, merging or inference;
v1: the nested ``USE_V1=1`` format, translated by ``import_lf_v1``) -> an llmpipe recipe.

Every key goes to its config path (``lora_rank`` -> ``lora.rank``); ``no_<flag>: true`` becomes
``<path>: false``; old spellings of values are translated (``bitsandbytes`` -> ``bnb``); JSON strings of
dict fields are parsed. Keys llmpipe spells differently are translated with a note, keys it has no parameter
for are refused with the reason (``import_lf_keys``; dropped with a note when they ask for nothing). Secrets
(``hf_hub_token``...) and ``trust_remote_code`` are never written: the user is told what to pass instead.
Unknown keys stop the import (exit 2) with all of them listed.

The model (its name, adapters, revision and chat template) goes to a model option written beside the
recipe (``<repo>/model/<name>.yaml``) that the recipe picks with ``override /model``, so ``model=<option>``
on the command line replaces it. A custom DeepSpeed JSON is used as the user's file, never swapped for a
preset. The recipe is composed through Hydra before it is written, and every imported value is checked to
land where it should.
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
from llmpipe.tools.import_lf_keys import (
    NO_EQUIVALENT,
    asks_nothing,
    kto_batch,
    ray_launch,
    swanlab_tracker,
    translate,
    unsupported,
)

EXIT_ERROR = 2
# LLaMA-Factory's example DeepSpeed files -> llmpipe's launch options (used only when the file is not found)
DEEPSPEED_OPTIONS = {"ds_z0_config": "deepspeed_z0", "ds_z2_config": "deepspeed_z2",
                     "ds_z3_config": "deepspeed_z3", "ds_z3_offload_config": "deepspeed_z3_offload"}
# what identifies the model: written to the model option, so that model=<option> replaces all of it
MODEL_PATHS = ("model.name_or_path", "model.adapter_name_or_path", "model.adapter_folder", "model.model_revision",
               "data.template")


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="LLaMA-Factory YAML (flat keys, as for `llamafactory-cli train`)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="recipe file to write, ideally <repo>/recipe/<name>.yaml (default: print to stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--skip-unsupported", action="store_true",
                   help="write the recipe without the keys llmpipe has no parameter for (each is listed in the"
                        " recipe's header with the reason) instead of stopping")


class ImportFailed(UserError):
    pass


class Converted:
    """What the import makes of one LLaMA-Factory file."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}      # config path -> value
        self.origin: dict[str, str] = {}      # config path -> LLaMA-Factory flag it came from
        self.overrides: list[str] = []        # defaults-list entries (override /launch: ...)
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.skipped: list[str] = []          # refused keys left out (--skip-unsupported)


def convert(data: dict, table: Any, src: Path | None = None, skip_unsupported: bool = False) -> Converted:
    """The recipe's values for the LLaMA-Factory mapping ``data``; raises ImportFailed listing every key it
    cannot import."""
    from llmpipe.config.checks import normalize_value
    from llmpipe.secrets import SECRET_ENV
    from llmpipe.tools import import_lf_v1

    out = Converted()
    values, origin, notes, warnings = out.values, out.origin, out.notes, out.warnings
    errors: list[str] = []
    src = src or Path("config.yaml")
    if import_lf_v1.is_v1(data):
        notes.append("LLaMA-Factory v1 format (USE_V1=1): its nested blocks are read as the v0 flags below")
        data = import_lf_v1.to_v0(data, src, notes, errors)
        if data.get("_launch"):
            out.overrides.append(f"override /launch: {data.pop('_launch')}")
    items = list(data.items())
    while items:
        key, value = items.pop(0)
        key = str(key)
        if key in NO_EQUIVALENT:
            if asks_nothing(value) or (key == "overwrite_output_dir" and value is True) \
                    or (key == "overwrite_cache" and value is True):
                notes.append(f"{key}: {value} dropped: {NO_EQUIVALENT[key]}")
                continue
            errors.append(f"{key}: {value!r} has no llmpipe equivalent: {NO_EQUIVALENT[key]}")
            continue
        ref = table.lookup(key)
        if ref is None:
            moved = translate(key, value, notes)
            if moved is not None:
                items[:0] = moved
                continue
            why = unsupported(key)
            if why is not None and asks_nothing(value):
                notes.append(f"{key}: {value!r} dropped (it asks for nothing): {why}")
            elif why is not None and skip_unsupported:
                out.skipped.append(f"{key}: {value!r} NOT imported: {why}")
            elif why is not None:
                errors.append(f"{key}: {value!r} refused: {why}")
            else:
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
        if p.path == "model.trust_remote_code" and value is True:
            warnings.append(f"{key}: true was NOT written: a recipe cannot run a model folder's own code; add"
                            " model.trust_remote_code=true to the command line (only a model that needs it, such"
                            " as one with custom modeling files, does)")
            continue
        if ref.negated:
            if not isinstance(value, bool):
                errors.append(f"{key}: {value!r}: a no_ flag takes true or false")
                continue
            value = not value
            notes.append(f"{key}: {not value} -> {p.path}: {value}")
        if p.path == "launch.fsdp" and isinstance(value, list):
            notes.append(f"{key}: {value} -> launch.fsdp: {' '.join(map(str, value))!r} (space-separated)")
            value = " ".join(map(str, value))
        if isinstance(value, str) and p.type.startswith(("dict", "list")) and value.strip()[:1] in "{[":
            try:
                value = json.loads(value)
            except ValueError as e:
                errors.append(f"{key}: {value!r} is not valid JSON ({e})")
                continue
        value = normalize_value(p.path, p.meta, value, notes)
        if p.meta.deprecated:
            notes.append(f"{key} is an older flag, kept at {p.path}: {p.meta.deprecated}")
        if p.path in values and values[p.path] != value:
            errors.append(f"{key}: sets {p.path}={value!r}, but {origin[p.path]} already set it to {values[p.path]!r}")
            continue
        values[p.path] = value
        origin[p.path] = key
    if errors:
        raise ImportFailed("\n".join(errors))
    _deepspeed(out, src)
    kto_batch(values, notes)
    ray_launch(values, origin, notes)
    swanlab_tracker(data, values, origin, notes)
    if values.get("launch.fsdp") and "launch.kind" not in values and _option_exists("launch", "fsdp"):
        out.overrides.append("override /launch: fsdp")
    return out


def _deepspeed(out: Converted, src: Path) -> None:
    """LLaMA-Factory's ``deepspeed: <json>``: the user's file, used as it is (an absolute path, so the recipe
    runs from any folder); llmpipe's preset of the same name only when the file cannot be found."""
    from llmpipe.tools.import_lf_v1 import _find

    ds = out.values.get("launch.deepspeed")
    if isinstance(ds, str) and ds.endswith(".json"):
        found = _find(ds, src)
        stem = Path(ds).stem
        if found is not None:
            try:
                json.loads(found.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ImportFailed(f"deepspeed: {ds}: not a readable JSON file ({e})") from None
            out.values["launch.deepspeed"] = str(found)
            out.notes.append(f"deepspeed: {ds} -> launch.deepspeed: {found} (your file, used as it is"
                             + (f"; llmpipe's preset launch={DEEPSPEED_OPTIONS[stem]} is the same idea" if stem in
                                DEEPSPEED_OPTIONS else "") + ")")
        elif stem in DEEPSPEED_OPTIONS and _option_exists("launch", DEEPSPEED_OPTIONS[stem]):
            out.overrides.append(f"override /launch: {DEEPSPEED_OPTIONS[stem]}")
            del out.values["launch.deepspeed"]
            out.notes.append(f"deepspeed: {ds} was not found from here, so its content is unknown: llmpipe's"
                             f" preset launch={DEEPSPEED_OPTIONS[stem]} stands in for LLaMA-Factory's file of that"
                             " name (run the import from LLaMA-Factory's folder to keep your own file)")
        else:
            out.notes.append(f"deepspeed: {ds} was not found from here (nor beside {src} or above it): kept as"
                             " written, a path relative to the folder you run llmpipe in")
        out.notes.append("deepspeed: LLaMA-Factory used every visible GPU; set launch.nproc_per_node=<n> to match")
    if "launch.deepspeed" in out.values and "launch.kind" not in out.values:
        out.values["launch.kind"] = "deepspeed"
        out.origin["launch.kind"] = "because deepspeed is set (LLaMA-Factory launched it with torchrun)"


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


def split_model(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(recipe values, model option values)``: the model's identity goes to the model option."""
    model = {k: v for k, v in values.items() if k in MODEL_PATHS}
    return {k: v for k, v in values.items() if k not in MODEL_PATHS}, model


def model_option_name(name: str) -> str:
    """The model option's name: the recipe's, unless a shipped model option has it."""
    return f"lf_{name}" if _option_exists("model", name) else name


def verify(text: str, values: dict[str, Any], model: tuple[str, str] | None = None,
           extra: list[str] = ()) -> tuple[Any, list[str]]:
    """Compose the recipe (and its model option ``(name, text)``) from a temporary recipe repository:
    ``(config, mismatches)``; raises on failure. ``extra``: command-line overrides to compose with."""
    from omegaconf import OmegaConf

    name = f"llmpipe_import_check_{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "recipe").mkdir()
        (Path(tmp) / "recipe" / f"{name}.yaml").write_text(text, encoding="utf-8")
        if model is not None:
            (Path(tmp) / "model").mkdir()
            (Path(tmp) / "model" / f"{model[0]}.yaml").write_text(model[1], encoding="utf-8")
        cfg = _compose([f"hydra.searchpath=[file://{tmp}]", f"+recipe={name}", *extra])
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


ACCELERATE_KEYS = ("compute_environment", "distributed_type", "fsdp_config", "num_processes", "mixed_precision")


def _fail(msg: str) -> int:
    print(f"llmpipe-tools import-llamafactory: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _is_inference(values: dict[str, Any]) -> bool:
    """A config that only loads a model (LLaMA-Factory's `chat`, `api`, `webchat`): nothing to train or export."""
    return not any(values.get(k) for k in ("train.do_train", "train.do_eval", "train.do_predict", "export.dir",
                                           "eval.task"))


def _header(src: Path, out: Path | None, name: str, conv: Converted, model_name: str | None,
            inference: bool) -> list[str]:
    header = [f"Imported from LLaMA-Factory's {src.name} by `llmpipe-tools import-llamafactory`."]
    repo = f"LLMPIPE_RECIPES={out.resolve().parent.parent} " if out is not None and model_name else ""
    if inference:
        header += ["An inference config: it trains nothing. Talk to the model or serve it:",
                   f"  {repo}python -m llmpipe.chat +recipe={name}",
                   f"  {repo}python -m llmpipe.serve +recipe={name}"]
    elif repo:
        header.append(f"Run:  {repo}python -m llmpipe +recipe={name}")
    else:
        header.append(f"Run:  python -m llmpipe +recipe={name}   (with this file at <repo>/recipe/{name}.yaml and"
                      " <repo> on LLMPIPE_RECIPES)")
    if model_name:
        header.append(f"The model is the option model/{model_name}.yaml beside this folder: model=<option> on the"
                      " command line (model=tiny...) replaces it, its adapters and its chat template.")
    header.append("A trailing comment names the LLaMA-Factory flag where its name differs.")
    if conv.skipped:
        header.append("Left out (--skip-unsupported): this recipe does NOT do what these keys asked for:")
        header += [f"  {s}" for s in conv.skipped]
    return header


def run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from llmpipe.config.flags import flag_table

    src: Path = args.file
    if not src.is_file():
        return _fail(f"{src}: no such file")
    try:
        data = OmegaConf.to_container(OmegaConf.load(src), resolve=False)
    except Exception as e:
        return _fail(f"{src} is not valid YAML: {e}")
    if not isinstance(data, dict):
        return _fail(f"{src}: expected a mapping of flags")
    if sum(k in data for k in ACCELERATE_KEYS) >= 2:
        return _fail(f"{src} is an Accelerate launcher config (`accelerate launch --config_file`), not a"
                     " LLaMA-Factory config: llmpipe starts FSDP itself (launch=fsdp; launch.fsdp and"
                     " launch.fsdp_config for its options, launch.nnodes for several machines)")
    try:
        conv = convert(data, flag_table(), src, getattr(args, "skip_unsupported", False))
    except ImportFailed as e:
        items = str(e).splitlines()
        print(f"llmpipe-tools import-llamafactory: {len(items)} key{'s' if len(items) != 1 else ''} of {src} cannot"
              " be imported (nothing was written):", file=sys.stderr)
        for line in items:
            print(f"  x {line}", file=sys.stderr)
        print("  (llmpipe-tools explain <flag> shows where a flag lives; --skip-unsupported writes the recipe"
              " without the refused keys)", file=sys.stderr)
        return EXIT_ERROR
    values, origin = conv.values, conv.origin
    out: Path | None = args.output
    name = (out or src).stem
    beside = out is not None and out.resolve().parent.name == "recipe"
    recipe_values, model_values = split_model(values) if beside else (values, {})
    model_name = model_option_name(name) if model_values else None
    inference = _is_inference(values)
    defaults = conv.overrides + _missing_group_defaults(recipe_values)
    defaults = [d for d in defaults if not d.startswith("override /model:")]
    if model_name:
        defaults.insert(0, f"override /model: {model_name}")
    text = render(recipe_values, origin, defaults, _header(src, out, name, conv, model_name, inference))
    model_text = None
    if model_name:
        model_text = render(model_values, origin, [], [
            f"model: {model_name}, imported from LLaMA-Factory's {src.name} with the recipe {name}",
            "(its name, adapters, revision and chat template; model=<option> replaces all of them)"])
    try:
        cfg, mismatches = verify(text, values, (model_name, model_text) if model_name else None)
    except Exception as e:
        return _fail(f"the recipe does not compose (nothing was written):\n  x {_compose_error(e, origin)}")
    if mismatches:
        print("llmpipe-tools import-llamafactory: the composed recipe differs from the input (nothing was written):",
              file=sys.stderr)
        for m in mismatches:
            print(f"  x {m}", file=sys.stderr)
        return EXIT_ERROR
    for n in conv.notes:
        print(f"note: {n}", file=sys.stderr)
    for w in conv.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for s in conv.skipped:
        print(f"skipped: {s}", file=sys.stderr)
    for line in preflight_notes(cfg):
        print(f"pre-flight: {line}", file=sys.stderr)
    if out is None:
        sys.stdout.write(text)
        if any(p.startswith("model.") for p in values):
            print("note: the model is written inline: model=<option> on the command line would not replace it;"
                  " write with -o <repo>/recipe/<name>.yaml to get a model option", file=sys.stderr)
        return 0
    model_out = out.resolve().parent.parent / "model" / f"{model_name}.yaml" if model_name else None
    for path in (out, model_out):
        if path is not None and path.exists() and not args.force:
            return _fail(f"{path} exists (use --force to overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    if model_out is not None:
        model_out.parent.mkdir(parents=True, exist_ok=True)
        model_out.write_text(model_text, encoding="utf-8")
        print(f"wrote {model_out} (model={model_name})", file=sys.stderr)
    if not beside:
        print(f"note: Hydra finds recipes as recipe/<name>.yaml under a recipe source; move it to"
              f" <repo>/recipe/{out.name} and put <repo> on LLMPIPE_RECIPES", file=sys.stderr)
    return 0
