"""Model rules: where the weights come from (local, built-in, hub, offline cache), attention kernels and
GPU-only kernels, tokenizer additions, multimodal pixel bounds."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

from llmpipe.config.environment import offline
from llmpipe.config.families.model import BUILTIN_MODELS
from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import fmt, get, problem

BUILTINS = ("builtin:tiny", "builtin:bench")   # the ones suggested to users
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")


def _references(cfg: Any) -> Iterator[tuple[str, str, str]]:
    """(key, reference, kind) for every model or adapter the run would load; kind is 'model' or 'adapter'."""
    yield from ((k, v, "model") for k, v in [("model.name_or_path", get(cfg, "model.name_or_path"))] if v)
    for key in ("model.adapter_name_or_path", "pref.ref_model_adapters", "ppo.reward_model_adapters"):
        for ref in get(cfg, key, []):
            yield key, ref, "adapter"
    if get(cfg, "pref.ref_model"):
        yield "pref.ref_model", str(get(cfg, "pref.ref_model")), "model"
    rm = get(cfg, "ppo.reward_model")
    if rm and get(cfg, "ppo.reward_model_type") != "api" and not str(rm).startswith(("http://", "https://", "step:")):
        yield "ppo.reward_model", str(rm), "adapter" if get(cfg, "ppo.reward_model_type") == "lora" else "model"


def _is_builtin(name: str) -> bool:
    return name in BUILTIN_MODELS


def looks_like_hub_id(ref: str) -> bool:
    return bool(_HUB_ID.match(ref)) and not ref.startswith((".", "~")) and not Path(ref).exists()


def hub_cache_dirs(cfg: Any) -> list[Path]:
    dirs = []
    if get(cfg, "model.cache_dir"):
        dirs.append(Path(str(get(cfg, "model.cache_dir"))).expanduser())
    env = os.environ
    hub = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if hub:
        dirs.append(Path(hub).expanduser())
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    dirs.append(Path(home).expanduser() / "hub")
    return dirs


def in_hub_cache(ref: str, cfg: Any) -> bool:
    folder = "models--" + ref.replace("/", "--")
    for d in hub_cache_dirs(cfg):
        snaps = d / folder / "snapshots"
        try:
            if snaps.is_dir() and any(snaps.iterdir()):
                return True
        except OSError:
            continue
    return False


@rule("model-path", keys=["model.name_or_path", "model.adapter_name_or_path", "pref.ref_model", "ppo.reward_model"],
      bad=[["model.name_or_path=./no/such/model_dir"], ["model.name_or_path=builtin:huge"], ["model.name_or_path=' '"],
           ["model.adapter_name_or_path=/no/such/adapter"]],
      good=[["model.name_or_path=builtin:tiny"], ["model.name_or_path=builtin:bench"],
            ["model.adapter_name_or_path=llmpipe-test/cached"]])
def model_path(cfg, env):
    """Every model/adapter reference is a built-in name, an existing local folder, or a hub id (org/name)."""
    name = get(cfg, "model.name_or_path")
    if isinstance(name, str) and not name.strip():
        yield problem("model-path", "model.name_or_path", name, "is empty",
                      "a hub id, a local model folder, or builtin:tiny / builtin:bench", "model=tiny (built-in)")
    for key, ref, kind in _references(cfg):
        if ref.startswith("builtin:"):
            if kind == "model" and not _is_builtin(ref):
                yield problem("model-path", key, ref, "is not a built-in model", fmt(BUILTINS),
                              f"{key}=builtin:tiny")
            elif kind == "adapter":
                yield problem("model-path", key, ref, f"a built-in name is a base model, not an {kind}",
                              "a local adapter folder or a hub id (org/name)", f"model.name_or_path={ref}")
            continue
        if Path(ref).expanduser().exists() or looks_like_hub_id(ref):
            continue
        yield problem("model-path", key, ref,
                      f"no such local folder, and not a hub id of the form org/name (cwd: {os.getcwd()})",
                      f"an existing {kind} folder, a hub id such as Qwen/Qwen2.5-0.5B-Instruct"
                      + (", or builtin:tiny / builtin:bench" if kind == "model" else ""),
                      f"{key}=<absolute path of the {kind} folder>")


@rule("model-hub-offline", keys=["model.name_or_path", "model.adapter_name_or_path", "pref.ref_model",
                                 "ppo.reward_model"],
      bad=[["model.name_or_path=llmpipe-test/not-cached"], ["pref.ref_model=llmpipe-test/not-cached"]],
      good=[["model.name_or_path=llmpipe-test/cached"], ["pref.ref_model=llmpipe-test/cached"]])
def model_hub_offline(cfg, env):
    """Offline (HF_HUB_OFFLINE=1 or LLMPIPE_OFFLINE=1), a hub id must already be in the local hub cache."""
    var = offline()
    if var is None:
        return
    for key, ref, _ in _references(cfg):
        if looks_like_hub_id(ref) and not in_hub_cache(ref, cfg):
            where = ", ".join(str(d) for d in hub_cache_dirs(cfg))
            yield problem("model-hub-offline", key, ref,
                          f"is a hub id, {var}=1 forbids downloading, and it is not in the hub cache ({where})",
                          "a hub id already in the cache, a local folder, or builtin:tiny",
                          f"download it where you have network (huggingface-cli download {ref}) and set"
                          f" {key}=<that folder>, or unset {var}")


@rule("model-flash-attn-cuda", keys=["model.flash_attn"],
      bad=[["model.flash_attn=fa2"], ["model.flash_attn=fa3"]],
      good=[["model.flash_attn=sdpa"], ["model.flash_attn=auto"], ["model.flash_attn=disabled"]],
      env={"gpu_count": 0})
def flash_attn_cuda(cfg, env):
    """FlashAttention kernels (fa2, fa3) exist only for CUDA GPUs."""
    fa = get(cfg, "model.flash_attn")
    if fa in ("fa2", "fa3") and not env.cuda:
        yield problem("model-flash-attn-cuda", "model.flash_attn", fa,
                      "FlashAttention runs only on a CUDA GPU and this machine has none",
                      "auto, sdpa or disabled without a GPU", "model.flash_attn=sdpa")


@rule("model-flash-attn-package", keys=["model.flash_attn"],
      bad=[["model.flash_attn=fa2"], ["model.flash_attn=fa3"]],
      good=[["model.flash_attn=sdpa"], ["model.flash_attn=auto"]],
      env={"gpu_count": 1, "missing_packages": frozenset({"flash_attn", "flash_attn_interface"})})
def flash_attn_package(cfg, env):
    """fa2 needs the flash-attn package, fa3 the flash-attn-3 (flash_attn_interface) package."""
    fa = get(cfg, "model.flash_attn")
    need = {"fa2": ("flash_attn", "pip install flash-attn --no-build-isolation"),
            "fa3": ("flash_attn_interface", "build flash-attn 3 from the hopper/ folder of the flash-attention repo")}
    if fa in need and not env.has(need[fa][0]):
        yield problem("model-flash-attn-package", "model.flash_attn", fa,
                      f"the module {need[fa][0]} is not installed", "sdpa works without extra packages",
                      f"{need[fa][1]}, or model.flash_attn=sdpa")


@rule("model-gpu-kernels", keys=["model.enable_liger_kernel", "model.use_unsloth"],
      bad=[["model.enable_liger_kernel=true"], ["model.use_unsloth=true"]],
      good=[["model.use_unsloth_gc=true"], ["model.enable_liger_kernel=false"]],
      env={"gpu_count": 0})
def gpu_kernels(cfg, env):
    """Liger kernels (triton) and Unsloth need a CUDA GPU; without one they fail at the first step."""
    if env.cuda:
        return
    for key, what in (("model.enable_liger_kernel", "Liger kernels are triton GPU kernels"),
                      ("model.use_unsloth", "Unsloth patches the model with GPU kernels")):
        if get(cfg, key):
            yield problem("model-gpu-kernels", key, True, f"{what} and this machine has no CUDA GPU",
                          "false on a machine without a GPU", f"{key}=false")


@rule("model-kernel-packages", keys=["model.enable_liger_kernel", "model.use_unsloth", "model.mixture_of_depths"],
      bad=[["model.enable_liger_kernel=true"], ["model.use_unsloth=true"], ["model.mixture_of_depths=convert"]],
      good=[["model.use_unsloth_gc=true"], ["model.mixture_of_depths=null"]],
      env={"gpu_count": 1, "missing_packages": frozenset({"liger_kernel", "unsloth", "MoD"})})
def kernel_packages(cfg, env):
    """Optional kernel packages must be installed before a run that asks for them."""
    table = (("model.enable_liger_kernel", "liger_kernel", "pip install liger-kernel"),
             ("model.use_unsloth", "unsloth", "pip install unsloth"),
             ("model.mixture_of_depths", "MoD", "pip install 'mixture-of-depth>=1.1.6'"))
    for key, module, install in table:
        value = get(cfg, key)
        if value and not env.has(module):
            off = "null" if key == "model.mixture_of_depths" else "false"
            yield problem("model-kernel-packages", key, value, f"needs the Python module {module}, which is not installed",
                          f"{key}={off} without it", f"{install}, or {key}={off}")


@rule("model-shift-attn", keys=["model.shift_attn", "model.flash_attn", "data.neat_packing", "model.use_unsloth"],
      bad=[["model.shift_attn=true", "model.flash_attn=fa2"], ["model.shift_attn=true", "data.neat_packing=true"],
           ["model.shift_attn=true", "model.use_unsloth=true"]],
      good=[["model.shift_attn=true"], ["model.shift_attn=true", "model.flash_attn=sdpa"]],
      env={"gpu_count": 1, "available_packages": frozenset({"flash_attn", "unsloth"})})
def shift_attn(cfg, env):
    """llmpipe's S²-Attn is an attention function of its own (SDPA per group): it replaces the attention kernel."""
    if not get(cfg, "model.shift_attn"):
        return
    fa = get(cfg, "model.flash_attn", "auto")
    if fa in ("fa2", "fa3"):
        yield problem("model-shift-attn", "model.flash_attn", fa, "S²-Attn computes grouped attention with SDPA, so "
                      "FlashAttention would not be used", "model.flash_attn=auto or sdpa with model.shift_attn",
                      "model.flash_attn=sdpa, or model.shift_attn=false")
    if get(cfg, "data.neat_packing"):
        yield problem("model-shift-attn", "data.neat_packing", True, "S²-Attn groups tokens by position and cannot keep "
                      "neatly packed examples apart", "model.shift_attn with data.neat_packing=false",
                      "data.neat_packing=false, or model.shift_attn=false")
    if get(cfg, "model.use_unsloth"):
        yield problem("model-shift-attn", "model.use_unsloth", True, "Unsloth replaces the attention layers, so "
                      "S²-Attn cannot be applied", "one of the two", "model.shift_attn=false")


@rule("model-unsloth-gc", keys=["model.use_unsloth_gc", "model.disable_gradient_checkpointing"],
      bad=[["model.use_unsloth_gc=true", "model.disable_gradient_checkpointing=true"]],
      good=[["model.use_unsloth_gc=true"], ["model.disable_gradient_checkpointing=true"]])
def unsloth_gc(cfg, env):
    """Unsloth-style gradient checkpointing offloads checkpointed activations: it needs checkpointing on."""
    if get(cfg, "model.use_unsloth_gc") and get(cfg, "model.disable_gradient_checkpointing"):
        yield problem("model-unsloth-gc", "model.use_unsloth_gc", True, "offloads the activations of gradient "
                      "checkpointing to the CPU, and checkpointing is disabled",
                      "model.use_unsloth_gc with gradient checkpointing on", "model.disable_gradient_checkpointing=false")


@rule("model-special-tokens", keys=["model.init_special_tokens", "model.new_special_tokens_config",
                                    "model.add_special_tokens"],
      bad=[["model.init_special_tokens=desc_init"],
           ["model.new_special_tokens_config=/no/such/tokens.yaml"],
           ["model.new_special_tokens_config=/no/such/tokens.yaml", "model.add_special_tokens=tok_a"]],
      good=[["model.init_special_tokens=noise_init"], ["model.add_special_tokens=tok_a"]])
def special_tokens(cfg, env):
    """Description-based token init needs the description file; the file and add_special_tokens exclude each other."""
    init = get(cfg, "model.init_special_tokens", "noise_init")
    conf = get(cfg, "model.new_special_tokens_config")
    if init in ("desc_init", "desc_init_w_noise") and not conf:
        yield problem("model-special-tokens", "model.init_special_tokens", init,
                      "initialises new tokens from their descriptions, but no description file is given",
                      "noise_init, or desc_init* together with model.new_special_tokens_config",
                      "model.new_special_tokens_config=<tokens.yaml> or model.init_special_tokens=noise_init")
    if conf and not Path(str(conf)).expanduser().is_file():
        yield problem("model-special-tokens", "model.new_special_tokens_config", conf, "no such file",
                      "a YAML file mapping each new token to its description",
                      "model.new_special_tokens_config=<existing tokens.yaml>")
    if conf and get(cfg, "model.add_special_tokens"):
        yield problem("model-special-tokens", "model.new_special_tokens_config + model.add_special_tokens", conf,
                      "both list special tokens to add; one of them would be ignored",
                      "one of the two", "model.add_special_tokens=null (keep the YAML file)")


@rule("vision-pixel-bounds", keys=["vision.image_max_pixels", "vision.image_min_pixels",
                                   "vision.video_max_pixels", "vision.video_min_pixels"],
      bad=[["vision.image_max_pixels=100", "vision.image_min_pixels=200"],
           ["vision.video_min_pixels=70000"]],
      good=[["vision.image_max_pixels=200", "vision.image_min_pixels=200"], ["vision.video_min_pixels=1024"]])
def pixel_bounds(cfg, env):
    """A maximum pixel count may not be smaller than the minimum (images and video frames)."""
    for kind in ("image", "video"):
        hi, lo = get(cfg, f"vision.{kind}_max_pixels"), get(cfg, f"vision.{kind}_min_pixels")
        if hi is not None and lo is not None and hi < lo:
            yield problem("vision-pixel-bounds", f"vision.{kind}_max_pixels", hi,
                          f"is smaller than vision.{kind}_min_pixels={lo}", f"{kind}_max_pixels >= {kind}_min_pixels",
                          f"vision.{kind}_max_pixels={lo} or vision.{kind}_min_pixels={hi}")


@rule("model-transformers5-removed", keys=["model.use_fast_tokenizer", "model.low_cpu_mem_usage"],
      bad=[["model.use_fast_tokenizer=false"], ["model.low_cpu_mem_usage=false"]],
      good=[["model.use_fast_tokenizer=true", "model.low_cpu_mem_usage=true"]])
def transformers5_removed(cfg, env):
    """Loading switches that transformers 5 removed, so that only their default can be honoured: every model type
    has one tokenizer class (AutoTokenizer discards use_fast; a model with only a Python tokenizer gets it anyway,
    every other one the Rust `tokenizers` one), and from_pretrained always loads with low memory use."""
    if get(cfg, "model.use_fast_tokenizer") is False:
        yield problem("model-transformers5-removed", "model.use_fast_tokenizer", False,
                      "transformers 5 has a single tokenizer per model type and AutoTokenizer ignores use_fast: a "
                      "model whose only tokenizer is the Python one already gets it, the others have no slow tokenizer "
                      "left to choose", "true (the default)", "model.use_fast_tokenizer=true")
    if get(cfg, "model.low_cpu_mem_usage") is False:
        yield problem("model-transformers5-removed", "model.low_cpu_mem_usage", False,
                      "transformers 5 always loads weights with low memory use (from_pretrained dropped the option), "
                      "so it cannot be turned off", "true (the default)", "model.low_cpu_mem_usage=true")


@rule("model-offload-folder", keys=["model.offload_folder", "quantization.device_map"],
      bad=[["model.offload_folder=/tmp/offload"]],
      good=[["model.offload_folder=offload"]])
def offload_folder(cfg, env):
    """Weights go to model.offload_folder only when an automatic device map (quantization.device_map=auto) runs out of
    device memory; without one nothing is ever offloaded there."""
    folder = get(cfg, "model.offload_folder", "offload")
    if folder != "offload" and get(cfg, "quantization.device_map") != "auto":
        yield problem("model-offload-folder", "model.offload_folder", folder,
                      "weights are offloaded to disk only under an automatic device map (quantization.device_map=auto), "
                      "and this run has none, so the folder would never be used", "the default (offload)",
                      "remove model.offload_folder")


@rule("model-other-hub-tokens", keys=["model.ms_hub_token", "model.om_hub_token"],
      bad=[["model.ms_hub_token=ms-token-example"], ["model.om_hub_token=om-token-example"]],
      good=[["model.hf_hub_token=hf_ruleEXAMPLE12345678"]])
def other_hub_tokens(cfg, env):
    """llmpipe loads models, adapters and datasets from the Hugging Face Hub and local folders only: it has no
    ModelScope or Modelers (openmind) source, so their tokens would be sent nowhere."""
    for key, hub, package in (("model.ms_hub_token", "ModelScope", "modelscope"),
                              ("model.om_hub_token", "Modelers (openmind)", "openmind")):
        if get(cfg, key):
            have = "installed" if package in env.available_packages else "not installed"
            yield problem("model-other-hub-tokens", key, "<redacted>",
                          f"llmpipe has no {hub} hub source (only the Hugging Face Hub and local folders), so nothing "
                          f"would use this token (the {package} package is {have})",
                          "unset", f"remove {key}; download the model with the {package} client and give "
                          "model.name_or_path=<its local folder>")


@rule("model-selective-gc", keys=["model.gradient_checkpointing", "model.disable_gradient_checkpointing",
                                  "model.use_unsloth_gc", "train.stage"],
      bad=[["model.gradient_checkpointing=attention", "model.disable_gradient_checkpointing=true"],
           ["model.gradient_checkpointing=mlp", "model.use_unsloth_gc=true"],
           ["model.gradient_checkpointing=mlp", "train.stage=ppo", "ppo.reward_model=builtin:tiny",
            "ppo.reward_model_type=full"]],
      good=[["model.gradient_checkpointing=attention"], ["model.gradient_checkpointing=mlp"],
            ["model.disable_gradient_checkpointing=true"]])
def selective_gc(cfg, env):
    """Selective checkpointing (attention/mlp) replaces the layer-level kind: it needs checkpointing on, and the
    stages whose trainer reads the TrainingArguments (PPO enables the layer-level kind itself)."""
    mode = get(cfg, "model.gradient_checkpointing", "full")
    if mode == "full":
        return
    clash = [(k, why) for k, why in (
        ("model.disable_gradient_checkpointing", "turns checkpointing off"),
        ("model.use_unsloth_gc", "offloads the layer-level checkpoints"),
    ) if get(cfg, k)]
    if get(cfg, "train.stage") == "ppo":
        clash.append(("train.stage", "PPO checkpoints whole layers (its own loop)"))
    for key, why in clash:
        yield problem("model-selective-gc", "model.gradient_checkpointing", mode,
                      f"{key}={get(cfg, key)} {why}, so selective checkpointing would not take effect",
                      "model.gradient_checkpointing=full with it", "model.gradient_checkpointing=full")
