"""What ``import-llamafactory`` does with LLaMA-Factory keys that have no llmpipe flag of the same name:
translate them (with a note), drop them when they ask for nothing (with a note), or refuse them with the
reason. The flag table (``llmpipe.config.flags``) is asked first, so a key llmpipe learns later is mapped
there and never reaches these tables.
"""
from __future__ import annotations

import re
from typing import Any

# keys whose job llmpipe does structurally: dropped (with the reason) when they ask for the default
NO_EQUIVALENT = {
    "overwrite_output_dir": "llmpipe never writes into an existing output: each stage publishes into the"
                            " content-addressed store and re-runs only when its inputs change",
    "resume_from_checkpoint": "llmpipe resumes from its stage store (a finished stage is reused, a killed one"
                              " restarts from its last checkpoint in the store)",
    "overwrite_cache": "llmpipe's tokenized data is keyed by content: a changed input is re-tokenized, an"
                       " unchanged one reused",
}

# keys ``translate`` rewrites, and how (for ``classify`` / ``llmpipe-tools explain``)
TRANSLATED = {
    "gradient_checkpointing": "the negation of model.disable_gradient_checkpointing",
    "gradient_checkpointing_kwargs": "{use_reentrant: x} -> model.use_reentrant_gc=x (other torch checkpoint"
                                     " options are refused)",
    "fsdp_transformer_layer_cls_to_wrap": "launch.fsdp_config {transformer_layer_cls_to_wrap: [...]}",
    "use_ray": "true -> launch.kind=ray (LLaMA-Factory's USE_RAY=1)",
    "use_swanlab": "true -> swanlab added to train.report_to",
    # v1 (USE_V1=1) training keys
    "enable_activation_checkpointing": "the negation of model.disable_gradient_checkpointing",
    "batching_workers": "train.dataloader_num_workers",
    "dist_timeout": "launch.ddp_timeout",
    "save_epochs": "1 -> train.save_strategy=epoch (other values are refused: the Trainer saves every epoch"
                   " or every train.save_steps steps)",
    "save_ckpt_as_hf": "dropped: llmpipe's checkpoints are Hugging Face folders already",
    "dp_size": "null or the number of ranks: dropped (llmpipe's data-parallel size is always the number of ranks);"
               " other values are refused",
    "mp_replicate_size": "1: dropped (no replicate groups); other values are refused",
    "mp_shard_size": "null: dropped (launch=fsdp shards over every rank); other values are refused",
}

# (pattern of LLaMA-Factory keys, reason llmpipe has no such parameter). A key that matches is dropped with a
# note when its value asks for nothing (false, null, 0, "", "none"); any other value is refused.
_UNSUPPORTED: list[tuple[str, str]] = [
    ((r"(tensor|pipeline|virtual_pipeline|context|expert|expert_tensor)_model_parallel_size|sequence_parallel"
     r"|recompute_.*|overlap_.*|use_distributed_optimizer|bias_activation_fusion|apply_rope_fusion"
     r"|moe_.*_dispatcher.*|moe_grouped_gemm|moe_layer_recompute|moe_token_dispatcher_type|mca_.*|megatron_.*"
     r"|use_mca|use_packed_sequences|context_parallel_size|calculate_per_token_loss|account_for_.*_in_pipeline_split|decoder_.*_pipeline_stage"
     r"|export_hf_on_finish|optimizer_cpu_offload|use_precision_aware_optimizer|moe_router_.*"
     r"|use_megatron_bridge|masked_softmax_fusion|cross_entropy_loss_fusion|mixed_precision|extra_config"),
     ("Megatron-Core / Megatron-Bridge training (USE_MCA / USE_MEGATRON_BRIDGE) is not an llmpipe back-end;"
     " llmpipe trains with the Hugging Face Trainer under torchrun, DeepSpeed or FSDP (launch=...)")),
    ((r"use_kt|kt_.*|cpu_infer|chunk_size"),
     ("KTransformers (CPU/GPU hybrid MoE kernels) is not an llmpipe back-end")),
    ((r"use_hyper_parallel|hyper_parallel_.*"),
     ("the hyper_parallel package's FSDP/TP/context-parallel trainer is not an llmpipe back-end; llmpipe shards"
     " with launch=fsdp or launch=deepspeed_* (ZeRO) under torchrun")),
    ((r"sglang_config|sglang_lora_backend"),
     ("llmpipe has no SGLang engine (infer.backend: huggingface or vllm); export the model (export.dir=...) and"
     " start SGLang's own server on it")),
    ((r"download_mode"),
     ("llmpipe never downloads evaluation data: it reads local or bundled files (offline by design)")),
    ((r"use_v1_kernels"),
     ("LLaMA-Factory's own v1 kernel set (Ascend NPU fused ops) has no llmpipe counterpart;"
     " llmpipe uses the attention the model's config selects (model.flash_attn)")),
    ((r"enable_profiler|profiler_.*|profile_.*"),
     ("not one of the profiler's options, which llmpipe has as train.enable_torch_profiler, train.profiler_* and"
      " train.profile_modules (llmpipe-tools explain train)")),
    ((r"gradient_checkpointing_kwargs"),
     ("of torch's checkpoint options only use_reentrant has an llmpipe parameter (model.use_reentrant_gc)")),
    ((r"dp_size|mp_replicate_size|mp_shard_size"),
     ("llmpipe has no device mesh of its own: every rank is a data-parallel rank, and launch=fsdp shards over all"
     " of them (hybrid replicate/shard groups are not in llmpipe)")),
    ((r"save_epochs"),
     ("the Trainer saves every epoch (train.save_strategy=epoch) or every train.save_steps steps")),
    ((r"custom_chat_template"),
     ("llmpipe formats conversations with named templates (data.template), which its data checks know;"
     " a free Jinja string is not accepted")),
    ((r"data_shared_file_system"),
     ("llmpipe prepares data once, in the load stage, on the main process")),
]
_UNSUPPORTED_RE = [(re.compile(f"(?:{p})$"), why) for p, why in _UNSUPPORTED]


def unsupported(key: str) -> str | None:
    """Why llmpipe has no parameter for LLaMA-Factory's ``key`` (None when the tables do not know it)."""
    for pattern, why in _UNSUPPORTED_RE:
        if pattern.match(key):
            return why
    return None


def classify(key: str) -> tuple[str, str] | None:
    """What llmpipe does with LLaMA-Factory's ``key``: ``("mapped", path)``, ``("translated", how)``,
    ``("dropped", why)`` or ``("refused", why)``; None when llmpipe does not know the key."""
    from llmpipe.config.flags import flag_table

    ref = flag_table().lookup(key)
    if ref is not None:
        return "mapped", ref.param.path
    if key in TRANSLATED:
        return "translated", TRANSLATED[key]
    if key in NO_EQUIVALENT:
        return "dropped", NO_EQUIVALENT[key]
    why = unsupported(key)
    return ("refused", why) if why is not None else None


def asks_nothing(value: Any) -> bool:
    """A value that turns a feature off or leaves it unset (what dropping the key also does)."""
    return value in (None, False, 0, "", "none", "None", "null") or value == [] or value == {}


def translate(key: str, value: Any, notes: list[str]) -> list[tuple[str, Any]] | None:
    """``[(llmpipe flag or path, value), ...]`` for LLaMA-Factory keys spelled differently in llmpipe, or None."""
    if key == "gradient_checkpointing" and isinstance(value, bool):
        notes.append(f"gradient_checkpointing: {value} -> model.disable_gradient_checkpointing: {not value}"
                     " (llmpipe turns checkpointing on by default, as LLaMA-Factory does)")
        return [("model.disable_gradient_checkpointing", not value)]
    if key == "gradient_checkpointing_kwargs" and isinstance(value, dict) and set(value) == {"use_reentrant"}:
        notes.append(f"{key}: {value} -> model.use_reentrant_gc: {value['use_reentrant']}")
        return [("model.use_reentrant_gc", value["use_reentrant"])]
    if key == "enable_activation_checkpointing" and isinstance(value, bool):
        notes.append(f"{key}: {value} -> model.disable_gradient_checkpointing: {not value}")
        return [("model.disable_gradient_checkpointing", not value)]
    simple = {"batching_workers": "train.dataloader_num_workers", "dist_timeout": "launch.ddp_timeout"}
    if key in simple and isinstance(value, int) and not isinstance(value, bool):
        notes.append(f"{key}: {value} -> {simple[key]}: {value}")
        return [(simple[key], value)]
    if key == "save_epochs" and value == 1:
        notes.append(f"{key}: 1 -> train.save_strategy: epoch")
        return [("train.save_strategy", "epoch")]
    if (key == "save_ckpt_as_hf" and isinstance(value, bool)) or (key in ("dp_size", "mp_shard_size", "save_epochs")
                                                               and value is None) \
            or (key == "mp_replicate_size" and value in (1, None)):
        notes.append(f"{key}: {value!r} dropped: {TRANSLATED[key]}")
        return []
    if key == "use_swanlab" and isinstance(value, bool):
        return []   # swanlab_tracker adds it to train.report_to once every key is read
    if key == "use_ray" and isinstance(value, bool):
        notes.append(f"use_ray: {value} -> launch.kind: ray" if value else "use_ray: false dropped")
        return [("launch.kind", "ray")] if value else []
    if key == "fsdp_transformer_layer_cls_to_wrap" and value:
        layers = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
        notes.append(f"{key}: {value} -> launch.fsdp_config: {{transformer_layer_cls_to_wrap: {layers}}} (the"
                     " Trainer's own spelling; the flat argument is deprecated in transformers)")
        return [("launch.fsdp_config", {"transformer_layer_cls_to_wrap": layers})]
    return None


def kto_batch(values: dict[str, Any], notes: list[str]) -> None:
    """LLaMA-Factory trains KTO with one example per device batch: it pairs each example with another one's
    answer for the KL term while preprocessing. TRL pairs them within the device batch, so one example would be
    its own pair: two per batch with half the accumulation keep the examples per optimizer step."""
    if values.get("train.stage") != "kto" or values.get("train.per_device_train_batch_size", 8) != 1:
        return
    gas = values.get("train.gradient_accumulation_steps", 1)
    values["train.per_device_train_batch_size"] = 2
    note = ("per_device_train_batch_size: 1 -> 2 for KTO (TRL draws each example's KL pair from its own device"
            " batch; LLaMA-Factory drew it while preprocessing)")
    if isinstance(gas, int) and gas % 2 == 0:
        values["train.gradient_accumulation_steps"] = gas // 2
        note += f", gradient_accumulation_steps: {gas} -> {gas // 2}: the same {gas} examples per optimizer step"
    else:
        note += f"; gradient_accumulation_steps {gas} is odd, so each optimizer step sees {2 * gas} examples, not {gas}"
    notes.append(note)


def ray_launch(values: dict[str, Any], origin: dict[str, str], notes: list[str]) -> None:
    """A LLaMA-Factory YAML with Ray keys ran under Ray Train (USE_RAY=1 in its environment): launch.kind=ray,
    where Ray picks the rank-0 address itself (LLaMA-Factory's master_addr/master_port go)."""
    ray_keys = sorted(k for k in values if k.partition(".")[0] == "launch" and k.partition(".")[2].startswith("ray_"))
    if not ray_keys and values.get("launch.kind") != "ray":
        return
    if "launch.kind" not in values:
        values["launch.kind"] = "ray"
        origin["launch.kind"] = f"because {', '.join(origin.get(k, k) for k in ray_keys)} is set"
        notes.append(f"{', '.join(origin.get(k, k) for k in ray_keys)} -> launch.kind: ray (LLaMA-Factory trains"
                     " under Ray Train when USE_RAY=1 is in its environment)")
    for key in ("launch.master_addr", "launch.master_port"):
        if key in values:
            notes.append(f"{origin.get(key, key)}: {values.pop(key)!r} dropped: Ray Train sets up the process group"
                         " and picks the rank-0 address itself")
            origin.pop(key, None)


def swanlab_tracker(data: dict[str, Any], values: dict[str, Any], origin: dict[str, str], notes: list[str]) -> None:
    """LLaMA-Factory's ``use_swanlab: true`` adds its SwanLab callback whatever report_to says: swanlab joins
    train.report_to (replacing none)."""
    if data.get("use_swanlab") is not True:
        if "use_swanlab" in data:
            notes.append(f"use_swanlab: {data['use_swanlab']!r} dropped")
        return
    current = [n for n in (values.get("train.report_to") or []) if n not in ("none", "swanlab")] \
        if isinstance(values.get("train.report_to"), list) else \
        [n for n in str(values.get("train.report_to") or "").split(",") if n.strip() not in ("", "none", "swanlab")]
    values["train.report_to"] = current + ["swanlab"]
    origin["train.report_to"] = "use_swanlab" + (" and report_to" if current else "")
    notes.append(f"use_swanlab: true -> train.report_to: {','.join(current + ['swanlab'])} (SwanLab logs into"
                 " swanlog/ in the train stage's output unless swanlab_mode=cloud)")
