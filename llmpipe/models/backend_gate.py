"""Keep transformers, PEFT and accelerate from importing back-ends that a run does not use.

transformers imports hqq (``cache_utils``) and torchao (``quantizers.auto``) whenever they are installed,
PEFT imports bitsandbytes, which pulls in torch's inductor and prints a kernels warning on CPU, and
accelerate imports deepspeed when the Trainer unwraps its model. gptqmodel (a 2 s import that prints an ASCII
banner and changes PYTORCH_ALLOC_CONF and CUDA_DEVICE_ORDER) is probed by
PEFT and transformers whenever it is installed. With the ``methods`` and ``distributed``
extras installed that is about 1.5 s and 50-70 MiB on every training command (measured: the transformers +
PEFT + TRL imports of a DPO run, 5.4 s -> 4.1 s without the first three; deepspeed 0.2 s and 20 MiB more),
for nothing when the run neither quantizes nor launches DeepSpeed.

``hide_unused(cfg)`` marks each of those packages that the configuration cannot need as absent
(``sys.modules[name] = None``: ``importlib.util.find_spec`` then answers None and an import raises
ImportError, which is how both libraries test for them). A package stays visible when anything could need it:

- ``quantization.bit`` with its method (bnb -> bitsandbytes, hqq -> hqq, any other: all of them), a quantized reference or reward model
  (bitsandbytes), an 8-bit/paged optimiser, GaLore or Unsloth (bitsandbytes: galore_torch and unsloth import
  it) or torchao's low-bit AdamW (torchao);
- a model that is quantized already: its config.json (local folder or the offline hub cache) has a
  ``quantization_config``, or cannot be read before loading;
- deepspeed: ``launch.kind=deepspeed``, a ``launch.deepspeed`` config or DeepSpeed's own launcher;
- export quantization and the vLLM/SGLang back-ends (their own dependency trees), or ``LLMPIPE_IMPORT_ALL=1``.

Only the process that runs the stages is affected, and ``hide_unused`` of a later run in the same process
makes the packages that run needs visible again.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from llmpipe.config.rules._common import get

GATED = ("hqq", "torchao", "bitsandbytes", "deepspeed", "gptqmodel")
BNB_OPTIMIZERS = frozenset({
    "adamw_bnb_8bit", "adamw_8bit", "ademamix", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit",
    "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit",
    "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit"})
TORCHAO_OPTIMIZERS = frozenset({"adamw_torch_4bit", "adamw_torch_8bit"})


def _config_json(reference: str, revision: str | None) -> dict | None:
    """The config.json of a local model folder or of a hub model in the offline cache; None if unknown."""
    if reference.startswith("builtin:"):
        return {}
    local = Path(reference).expanduser()
    if local.is_dir():
        path = local / "config.json"
        return json.loads(path.read_text()) if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(reference, "config.json", revision=revision or None)
    except Exception:
        return None
    return json.loads(Path(found).read_text()) if isinstance(found, str) else None


def _models(cfg: Any) -> list[str]:
    refs = [get(cfg, "model.name_or_path"), get(cfg, "pref.ref_model")]
    if get(cfg, "ppo.reward_model_type") == "full":
        refs.append(get(cfg, "ppo.reward_model"))
    return [str(r) for r in refs if r]


def needed(cfg: Any) -> set[str]:
    """The gated packages this run could import (all of them when that cannot be told before loading)."""
    if os.environ.get("LLMPIPE_IMPORT_ALL") == "1" or get(cfg, "export.quantization_bit") is not None \
            or get(cfg, "infer.backend", "huggingface") not in ("huggingface", "hf"):
        return set(GATED)
    out: set[str] = set()
    if get(cfg, "quantization.bit") is not None:
        method = get(cfg, "quantization.method", "bnb")
        out |= {"bnb": {"bitsandbytes"}, "hqq": {"hqq"}}.get(method, set(GATED))
    if get(cfg, "pref.ref_model_quantization_bit") is not None or \
            get(cfg, "ppo.reward_model_quantization_bit") is not None:
        out.add("bitsandbytes")
    if get(cfg, "launch.kind") == "deepspeed" or get(cfg, "launch.deepspeed") or \
            get(cfg, "launch.launcher") == "deepspeed":
        out.add("deepspeed")
    if get(cfg, "galore.use_galore") or get(cfg, "model.use_unsloth"):
        out.add("bitsandbytes")   # galore_torch and unsloth import it at their own import
    optim = str(get(cfg, "train.optim", ""))
    if optim in BNB_OPTIMIZERS or ("8bit" in optim and optim not in TORCHAO_OPTIMIZERS):
        out.add("bitsandbytes")
    if optim in TORCHAO_OPTIMIZERS:
        out.add("torchao")
    for ref in _models(cfg):
        try:
            config = _config_json(ref, get(cfg, "model.model_revision"))
        except (OSError, ValueError):
            config = None
        if config is None or config.get("quantization_config") or \
                (config.get("text_config") or {}).get("quantization_config"):
            return set(GATED)
    return out


def hide_unused(cfg: Any) -> list[str]:
    """Mark the gated packages ``cfg`` does not need as absent (unless already imported); returns them."""
    keep = needed(cfg)
    hidden = []
    for name in GATED:
        if name in keep:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
        elif sys.modules.get(name, None) is None:
            sys.modules[name] = None
            hidden.append(name)
    return hidden
