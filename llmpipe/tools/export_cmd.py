"""``llmpipe-tools export``: export existing LoRA adapters (or a plain model) without training.

    llmpipe-tools export ADAPTER [ADAPTER ...] -o DIR [--bits 4 --calibration demo_pt] [--legacy] [--size 2]
                         [--push-to URL_OR_PATH] [--hub-model-id ORG/NAME] [--model BASE] [--set KEY=VALUE ...]

It is a shortcut for the equivalent pipeline run, which it prints and then runs (so stages are cached, a lock
file is written, and everything the pipeline checks is checked):

    python -m llmpipe model.name_or_path=BASE model.adapter_name_or_path='A,B' train.do_train=false export.dir=DIR ...

The base model defaults to the one the first adapter records (adapter_config.json). Adapters are merged in
the order given. Tokens are never arguments: the Hub token comes from HF_TOKEN, a git token from
LLMPIPE_GIT_TOKEN, both in the environment. Imports no torch.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("adapters", nargs="*", metavar="ADAPTER",
                   help="LoRA adapter folders (or hub ids), merged in this order; none: export --model as it is")
    p.add_argument("-o", "--out", required=True, help="export folder (export.dir)")
    p.add_argument("--model", help="base model (default: the base recorded by the first adapter)")
    p.add_argument("--bits", type=int, help="GPTQ-quantize to 2, 3, 4 or 8 bits (export.quantization_bit)")
    p.add_argument("--calibration", help="calibration dataset for --bits (export.quantization_dataset)")
    p.add_argument("--nsamples", type=int, help="calibration windows (export.quantization_nsamples)")
    p.add_argument("--maxlen", type=int, help="tokens per calibration window (export.quantization_maxlen)")
    p.add_argument("--size", help="maximum shard size in GB (export.size)")
    p.add_argument("--legacy", action="store_true", help="PyTorch .bin shards instead of safetensors")
    p.add_argument("--device", choices=("cpu", "auto"), help="export.device")
    p.add_argument("--dtype", choices=("auto", "float16", "bfloat16", "float32"), help="infer.dtype of the export")
    p.add_argument("--push-to", help="git remote URL or path to push the export to (export.push_to)")
    p.add_argument("--hub-model-id", help="Hugging Face Hub repository to upload to (token: HF_TOKEN)")
    p.add_argument("--data", help="data.dataset for the load stage (optional)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other override (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="show the plan only")


def _q(value: str) -> str:
    """A Hydra override value, quoted when needed (commas, spaces and '=' in paths stay literal)."""
    if re.fullmatch(r"[\w./:@+~-]+", str(value)):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def recorded_base(adapter: str) -> str | None:
    try:
        return json.loads((Path(adapter).expanduser() / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None


def _no_base_reason(adapters: list[str]) -> str:
    """Why no base model is known: the first adapter is missing or not an adapter, or nothing was given."""
    if not adapters:
        return "give an adapter folder, or --model to export a model as it is"
    first = Path(adapters[0]).expanduser()
    if first.is_dir() and not (first / "adapter_config.json").is_file():
        return f"{adapters[0]} is not a LoRA adapter folder (no adapter_config.json)"
    if (first / "adapter_config.json").is_file():
        return f"{first / 'adapter_config.json'} records no base model (base_model_name_or_path); give --model"
    if first.exists() or re.fullmatch(r"[\w.-]+/[\w.-]+", adapters[0]) is None:
        return f"adapter {adapters[0]} is not a folder (cwd: {Path.cwd()})"
    return f"{adapters[0]} is not a local folder; for a hub adapter give its base model with --model"


def overrides(args: argparse.Namespace) -> list[str]:
    base = args.model or (recorded_base(args.adapters[0]) if args.adapters else None)
    if not base:
        raise SystemExit(f"llmpipe-tools export: {_no_base_reason(args.adapters)}")
    adapters = [str(Path(a).expanduser().absolute()) if Path(a).expanduser().exists() else a for a in args.adapters]
    out = [f"model.name_or_path={_q(base)}", "train.do_train=false", f"export.dir={_q(Path(args.out).expanduser().absolute())}"]
    if adapters:
        out += ["train.finetuning_type=lora", f"model.adapter_name_or_path={_q(','.join(adapters))}"]
    pairs = [("export.quantization_bit", args.bits), ("export.quantization_dataset", args.calibration),
             ("export.quantization_nsamples", args.nsamples), ("export.quantization_maxlen", args.maxlen),
             ("export.size", args.size), ("export.device", args.device), ("infer.dtype", args.dtype),
             ("export.push_to", args.push_to), ("export.hub_model_id", args.hub_model_id), ("data.dataset", args.data)]
    out += [f"{k}={_q(v) if isinstance(v, str) else v}" for k, v in pairs if v is not None]
    if args.legacy:
        out.append("export.legacy_format=true")
    if args.dry_run:
        out.append("run.dry_run=true")
    bad = [s for s in args.set if "token" in s.split("=", 1)[0].lower()]
    if bad:
        raise SystemExit("llmpipe-tools export: tokens are not arguments; set HF_TOKEN (or LLMPIPE_GIT_TOKEN) "
                         "in the environment")
    return out + list(args.set)


def run(args: argparse.Namespace) -> int:
    cmd = [sys.executable, "-m", "llmpipe", *overrides(args)]
    print("llmpipe-tools export: python -m llmpipe " + shlex.join(cmd[3:]), flush=True)
    from llmpipe.processes import dies_with_parent

    return subprocess.call(cmd, preexec_fn=dies_with_parent())   # a killed tool does not leave the run going
