"""Export rules: GPTQ export needs calibration data and its packages; publishing needs an export and the network."""
from __future__ import annotations

from llmpipe.config.rules._common import get, offline, problem
from llmpipe.config.validate import rule

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
