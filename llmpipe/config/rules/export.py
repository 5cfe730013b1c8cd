"""Export rules: GPTQ export needs calibration data and its packages; publishing needs an export and the network."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from llmpipe.config.environment import offline
from llmpipe.config.families.export import EXPORT_MARKER
from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import adapters, get, problem

EXPORT_Q = ["export.dir=/tmp/llmpipe-export", "export.quantization_bit=4"]


@rule("export-quant-dataset", keys=["export.quantization_bit", "export.quantization_dataset"],
      bad=[EXPORT_Q], good=[EXPORT_Q + ["export.quantization_dataset=demo_pt"], ["export.dir=/tmp/llmpipe-export"]],
      env={"available_packages": frozenset({"gptqmodel", "optimum"})})
def quant_dataset(cfg, env):
    """GPTQ calibrates on sample text, so export quantization needs a calibration dataset."""
    bit = get(cfg, "export.quantization_bit")
    if bit is not None and not get(cfg, "export.quantization_dataset"):
        yield problem("export-quant-dataset", "export.quantization_dataset", None,
                      f"export.quantization_bit={bit} needs calibration text for GPTQ",
                      "a dataset name from dataset_info.json or a JSON file with a `text` column",
                      "export.quantization_dataset=demo_pt")


@rule("export-quant-packages", keys=["export.quantization_bit"],
      bad=[EXPORT_Q + ["export.quantization_dataset=demo_pt"]], good=[["export.dir=/tmp/llmpipe-export"]],
      env={"missing_packages": frozenset({"gptqmodel", "optimum"})})
def quant_packages(cfg, env):
    """GPTQ export goes through transformers + optimum + gptqmodel."""
    if get(cfg, "export.quantization_bit") is None:
        return
    missing = [m for m in ("gptqmodel", "optimum") if not env.has(m)]
    if missing:
        yield problem("export-quant-packages", "export.quantization_bit", get(cfg, "export.quantization_bit"),
                      f"GPTQ export needs {', '.join(missing)}, not installed", "an installed GPTQ stack",
                      "pip install optimum 'gptqmodel==7.6.0' (keeps torch), or export.quantization_bit=null")


@rule("export-needs-dir", keys=["export.dir", "export.quantization_bit", "export.hub_model_id", "export.push_to"],
      bad=[["export.quantization_bit=4", "export.quantization_dataset=demo_pt"], ["export.hub_model_id=me/model"]],
      good=[EXPORT_Q + ["export.quantization_dataset=demo_pt"], ["export.dir=/tmp/llmpipe-export", "export.hub_model_id=me/model"]],
      env={"available_packages": frozenset({"gptqmodel", "optimum"})})
def needs_dir(cfg, env):
    """Quantizing or publishing an export needs the export itself (export.dir)."""
    if get(cfg, "export.dir"):
        return
    for key in ("export.quantization_bit", "export.hub_model_id", "export.push_to"):
        if get(cfg, key) is not None:
            yield problem("export-needs-dir", key, get(cfg, key), "only applies to an exported model, and export.dir is unset",
                          f"{key} together with export.dir", "export.dir=<folder for the exported model>")


@rule("export-push-offline", keys=["export.hub_model_id", "export.push_to"],
      bad=[["export.dir=/tmp/llmpipe-export", "export.hub_model_id=me/model"],
           ["export.dir=/tmp/llmpipe-export", "export.push_to=https://example.com/me/model.git"]],
      good=[["export.dir=/tmp/llmpipe-export"], ["export.dir=/tmp/llmpipe-export", "export.push_to=/tmp/llmpipe-published"]])
def push_offline(cfg, env):
    """Pushing to the hub or a network remote is impossible in offline mode."""
    var = offline()
    if var is None:
        return
    if get(cfg, "export.hub_model_id"):
        yield problem("export-push-offline", "export.hub_model_id", get(cfg, "export.hub_model_id"),
                      f"pushing to the hub needs the network, and {var}=1", "export.hub_model_id=null while offline",
                      f"export.hub_model_id=null, or unset {var}")
    remote = str(get(cfg, "export.push_to") or "")
    if "://" in remote and not remote.startswith("file://") or remote.startswith("git@"):
        yield problem("export-push-offline", "export.push_to", remote, f"a network remote cannot be reached while {var}=1",
                      "a local folder or file:// remote while offline", f"export.push_to=<local folder>, or unset {var}")


@rule("export-dir-foreign", keys=["export.dir"],
      bad=[["export.dir=/etc"]], good=[["export.dir=/tmp/llmpipe-export-never-created"]])
def dir_foreign(cfg, env):
    """export.dir is replaced on every export: it must be new, empty, or an earlier llmpipe export."""
    d = get(cfg, "export.dir")
    if not d:
        return
    p = Path(str(d)).expanduser()
    if p.exists() and not p.is_dir():
        yield problem("export-dir-foreign", "export.dir", d, "is a file", "a folder", "export.dir=<new folder>")
    elif p.is_dir() and not (p / EXPORT_MARKER).is_file() and any(p.iterdir()):
        yield problem("export-dir-foreign", "export.dir", d,
                      f"already holds files llmpipe did not write (no {EXPORT_MARKER}); an export would replace them",
                      "a new or empty folder, or an earlier llmpipe export", "export.dir=<new folder>")


@rule("export-adapter-folder", keys=["model.adapter_name_or_path", "model.adapter_folder", "export.dir"],
      bad=[["export.dir=/tmp/llmpipe-export", "model.adapter_name_or_path=/tmp"],
           ["export.dir=/tmp/llmpipe-export", "model.adapter_name_or_path=/tmp", "model.adapter_folder=none-here"]],
      good=[["export.dir=/tmp/llmpipe-export", "model.adapter_name_or_path=llmpipe-test/cached"],
            ["model.adapter_name_or_path=/tmp"]])
def adapter_folder(cfg, env):
    """An adapter to merge into an export must be a PEFT adapter folder (adapter_config.json); with
    model.adapter_folder, its sub-folder of that name must be."""
    if not get(cfg, "export.dir"):
        return
    sub = get(cfg, "model.adapter_folder")
    for ref in adapters(cfg):
        p = Path(ref).expanduser()
        if p.is_dir() and not (p / (sub or "") / "adapter_config.json").is_file():
            yield problem("export-adapter-folder", "model.adapter_name_or_path", ref,
                          f"is not a PEFT adapter folder (no {sub + '/' if sub else ''}adapter_config.json)",
                          "the folder a LoRA training saved (adapter_config.json + adapter_model.safetensors)",
                          "model.adapter_name_or_path=<adapter folder>")


_HUB_REPO = re.compile(r"^(?:[A-Za-z0-9][\w.\-]*/)?[A-Za-z0-9][\w.\-]*$")


@rule("export-push-target", keys=["export.hub_model_id", "export.push_to"],
      bad=[["export.dir=/tmp/llmpipe-export", "export.hub_model_id=me/my model"],
           ["export.dir=/tmp/llmpipe-export", "export.push_to='https://me:s3cret@example.com/me/model.git'"]],
      good=[["export.dir=/tmp/llmpipe-export", "export.push_to=/tmp/llmpipe-published"]])
def push_target(cfg, env):
    """A hub repository id is `name` or `org/name`; a git remote carries no password (use LLMPIPE_GIT_TOKEN)."""
    repo = get(cfg, "export.hub_model_id")
    if repo and not _HUB_REPO.match(str(repo)):
        yield problem("export-push-target", "export.hub_model_id", repo, "is not a hub repository id",
                      "org/name or name (letters, digits, '-', '_', '.')", "export.hub_model_id=<org>/<name>")
    remote = str(get(cfg, "export.push_to") or "")
    if "://" in remote and urlsplit(remote).password:
        yield problem("export-push-target", "export.push_to", "<url with a password>",
                      "a password or token inside the remote URL would be saved in the config, the lock file and git",
                      "a URL without credentials", "remove user:password@ and set LLMPIPE_GIT_TOKEN in the environment")
