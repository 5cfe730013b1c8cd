"""Model family (``model.*``): what to load, tokenizer changes, attention/kernels and hub access."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import OptionalListFlag, param

# The models llmpipe builds itself, offline (llmpipe.models.tiny holds their specifications).
BUILTIN_MODELS = ("builtin:tiny", "builtin:tiny-random", "builtin:bench", "builtin:tiny_vl")
# The architecture zoo (llmpipe.models.zoo holds their specifications): tiny random instances of the architectures
# users fine-tune, built offline from transformers' config classes with builtin:tiny's tokenizer.
ZOO_MODELS = tuple(f"builtin:tiny-{a}" for a in ("llama3", "qwen2", "qwen3", "qwen3-moe", "mistral", "mixtral", "gemma2",
                                                 "gemma3", "phi3", "deepseek-v3", "glm4", "olmo2", "gpt-oss"))
# The vision-language zoo (llmpipe.models.vlm_zoo): tiny random image-text models of the families beyond tiny_vl.
VLM_ZOO_MODELS = tuple(f"builtin:tiny-{a}" for a in ("qwen2.5-vl", "qwen3-vl", "llava", "gemma3-vl", "llava-next",
                                                     "internvl", "idefics3", "smolvlm", "llava-next-video",
                                                     "qwen2-5-omni"))
# A tiny random Qwen2-Audio (llmpipe.models.audio_builtin): audio-language training.
AUDIO_MODELS = ("builtin:tiny-qwen2-audio",)
BUILTIN_MODELS = (*BUILTIN_MODELS, *ZOO_MODELS, *VLM_ZOO_MODELS, *AUDIO_MODELS)


@dataclass
class ModelConfig:
    name_or_path: str = param(
        "???", "Hub id or local path of the base model (required); 'builtin:tiny' is the offline tiny model"
        " built by llmpipe, 'builtin:bench' its benchmark-sized sibling.", seed="model_name_or_path",
    )
    adapter_name_or_path: OptionalListFlag = param(
        None, "Adapter path(s) or hub id(s), comma-separated: all but the last are merged, the last is resumed.",
        seed="adapter_name_or_path", list_sep=",",
    )
    adapter_folder: Optional[str] = param(
        None, "Sub-folder of each adapter of adapter_name_or_path that holds the adapter (PEFT's subfolder); "
        "training, merge and export read it there.", seed="adapter_folder",
    )
    cache_dir: Optional[str] = param(
        None, "Where downloaded models are cached (hub default when unset).", seed="cache_dir", volatile=True,
    )
    model_revision: str = param("main", "Model version to load: branch, tag or commit id.", seed="model_revision")
    use_fast_tokenizer: bool = param(True, "Use the fast (Rust `tokenizers`) tokenizer.", seed="use_fast_tokenizer")
    resize_vocab: bool = param(False, "Resize the tokenizer vocabulary and the embedding layers.", seed="resize_vocab")
    split_special_tokens: bool = param(
        False, "Split special tokens into ordinary pieces while tokenizing.", seed="split_special_tokens",
    )
    add_tokens: OptionalListFlag = param(
        None, "Ordinary (non-special) tokens to add to the tokenizer, comma-separated.", seed="add_tokens",
        list_sep=",",
    )
    add_special_tokens: OptionalListFlag = param(
        None, "Special tokens to add to the tokenizer, comma-separated.", seed="add_special_tokens", list_sep=",",
    )
    new_special_tokens: OptionalListFlag = param(
        None, "Older name for special tokens to add (comma-separated).", seed="new_special_tokens",
        deprecated="translated to model.add_special_tokens (same value)", list_sep=",",
    )
    new_special_tokens_config: Optional[str] = param(
        None, "YAML file {'<token>': 'description'} of special tokens; takes precedence over add_special_tokens.",
        seed="new_special_tokens_config",
    )
    init_special_tokens: str = param(
        "noise_init", "How new special tokens are initialised (desc_init* need new_special_tokens_config).",
        seed="init_special_tokens", choices=("noise_init", "desc_init", "desc_init_w_noise"),
    )
    low_cpu_mem_usage: bool = param(True, "Memory-efficient model loading.", seed="low_cpu_mem_usage")
    offload_folder: str = param(
        "offload", "Folder where weights are offloaded when they do not fit the devices.", seed="offload_folder",
        volatile=True,
    )
    train_from_scratch: bool = param(
        False, "Initialise the weights randomly instead of loading pretrained ones.", seed="train_from_scratch",
    )
    print_param_status: bool = param(
        False, "Debug aid: print every parameter's dtype, device and trainable flag.", seed="print_param_status",
        volatile=True,
    )
    trust_remote_code: bool = param(
        False, "Allow model/tokenizer code from the hub to run (off: only built-in architectures).",
        seed="trust_remote_code",
    )
    hf_hub_token: Optional[str] = param(
        None, "Hugging Face Hub token; when set it wins over HF_TOKEN (prefer the environment variable in shared"
        " recipes; redacted everywhere).",
        seed="hf_hub_token", secret=True, volatile=True,
    )
    ms_hub_token: Optional[str] = param(
        None, "ModelScope Hub token (prefer the MODELSCOPE_API_TOKEN environment variable; redacted everywhere).",
        seed="ms_hub_token", secret=True, volatile=True,
    )
    om_hub_token: Optional[str] = param(
        None, "Modelers Hub token (prefer the environment; redacted everywhere).",
        seed="om_hub_token", secret=True, volatile=True,
    )
    # attention / kernels / memory
    rope_scaling: Optional[str] = param(
        None, "RoPE scaling strategy for longer contexts (unset = the model's own).", seed="rope_scaling",
        choices=("linear", "dynamic", "yarn", "llama3"),
    )
    flash_attn: str = param(
        "auto", "Attention kernel: auto, disabled (eager), sdpa, fa2 (FlashAttention-2), fa3 (FlashAttention-3, GPU).",
        seed="flash_attn", choices=("auto", "disabled", "sdpa", "fa2", "fa3"),
    )
    shift_attn: bool = param(False, "Shift short attention (S^2-Attn, LongLoRA).", seed="shift_attn")
    mixture_of_depths: Optional[str] = param(
        None, "Convert the model to mixture-of-depths, or load a MoD model.", seed="mixture_of_depths",
        choices=("convert", "load"),
    )
    use_unsloth: bool = param(False, "Use Unsloth's optimised LoRA training (GPU).", seed="use_unsloth", gpu_only=True)
    use_unsloth_gc: bool = param(
        False, "Use Unsloth's gradient checkpointing (no Unsloth install needed).", seed="use_unsloth_gc",
    )
    enable_liger_kernel: bool = param(False, "Use Liger fused kernels for training (GPU).", seed="enable_liger_kernel",
                                      gpu_only=True)
    moe_aux_loss_coef: Optional[float] = param(
        None, "Coefficient of the MoE router auxiliary loss (unset = the model's own).", seed="moe_aux_loss_coef",
        ge=0.0,
    )
    disable_gradient_checkpointing: bool = param(
        False, "Turn gradient (activation) checkpointing off; it is on by default while training.",
        seed="disable_gradient_checkpointing",
    )
    gradient_checkpointing: str = param(
        "full", "What gradient checkpointing recomputes: full (every decoder layer, least memory), attention (only"
        " each layer's attention block; the MLP keeps its activations) or mlp (only the MLP block). Off with"
        " disable_gradient_checkpointing.", choices=("full", "attention", "mlp"),
    )
    use_reentrant_gc: bool = param(
        True, "Use reentrant gradient checkpointing (torch.utils.checkpoint use_reentrant).", seed="use_reentrant_gc",
    )
    upcast_layernorm: bool = param(False, "Keep layer-norm weights in fp32.", seed="upcast_layernorm")
    upcast_lmhead_output: bool = param(False, "Compute the lm_head output in fp32.", seed="upcast_lmhead_output")
