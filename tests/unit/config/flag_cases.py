"""Support of tests/unit/config/test_flag_effects.py, the cases: the value each parameter is set to, the context it
needs to be meaningful, and the short lists of known gaps (accepted and ignored today; no probe yet; refused for
a reason other than a missing GPU). The probes that show where a value arrives are in flag_probes.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# --- the context: what a parameter needs to be meaningful (longest matching prefix wins; one table) ---------
_MANY_TOKENS = "model.add_tokens='" + ",".join(f"<r{i}>" for i in range(60)) + "'"   # more than the spare rows
_PREDICT = ("train.do_predict=true", "train.predict_with_generate=true", "data.eval_dataset=demo_sft_eval")
_VLM = "model.name_or_path=builtin:tiny_vl"
# predict with a quantized model (predict, evaluate, chat and serve load it quantized)
_QUANT_INFER = ("quantization.bit=4", "train.do_train=false", "train.do_predict=true", "train.predict_with_generate=true",
                "data.val_size=0.1")
CONTEXT: dict[str, tuple[str, ...]] = {
    "eval": ("eval.task=mc_demo_test",),   # eval.* act on the mc_eval stage, which eval.task adds
    "vision": (_VLM,),   # vision.* means something on a vision-language model only (vision-flag-fits-model)
    "vision.freeze_language_model": (_VLM, "vision.freeze_multi_modal_projector=false"),   # something left to train
    "freeze": ("train.finetuning_type=freeze",),
    "data.enable_thinking": ("data.template=qwen3",),   # a reasoning template (data-enable-thinking)
    "data.preserve_thinking": ("data.template=qwen3",),   # a reasoning template (data-preserve-thinking)
    "freeze.use_llama_pro": ("train.finetuning_type=freeze", "freeze.trainable_layers=1"),
    "pref": ("train.stage=dpo", "data.dataset=demo_pref"),
    "pref.simpo_gamma": ("train.stage=dpo", "data.dataset=demo_pref", "pref.loss=simpo"),
    "pref.kto_chosen_weight": ("train.stage=kto", "data.dataset=demo_kto"),
    "pref.kto_rejected_weight": ("train.stage=kto", "data.dataset=demo_kto"),
    "ppo": ("train.stage=ppo", "data.dataset=demo_sft", "ppo.reward_model=builtin:tiny", "ppo.reward_model_type=full"),
    "ppo.reward_model_adapters": ("train.stage=ppo", "ppo.reward_model=builtin:tiny", "ppo.reward_model_type=full"),
    "ppo.reward_model_type": ("train.stage=ppo", "ppo.reward_model={files}/adapter"),
    "galore": ("galore.use_galore=true", "train.finetuning_type=full"),
    "galore.use_galore": ("train.finetuning_type=full",),
    "apollo": ("apollo.use_apollo=true", "train.finetuning_type=full"),
    "apollo.use_apollo": ("train.finetuning_type=full",),
    "muon": ("muon.use_muon=true",),
    "muon.use_muon": (),
    "oft": ("train.finetuning_type=oft",),
    "oft.rank": ("train.finetuning_type=oft", "oft.rank=8", "oft.block_size=0"),   # one of the two is set
    "oft.block_size": ("train.finetuning_type=oft",),
    "badam": ("badam.use_badam=true", "train.finetuning_type=full"),
    "badam.update_ratio": ("badam.use_badam=true", "badam.mode=ratio", "train.finetuning_type=full"),
    "badam.mask_mode": ("badam.use_badam=true", "badam.mode=ratio", "train.finetuning_type=full"),
    "badam.use_badam": ("train.finetuning_type=full",),
    "badam.use_adam_mini": ("train.finetuning_type=full",),
    "lora.loraplus_lr_embedding": ("lora.loraplus_lr_ratio=16",),
    "lora.pissa_iter": ("lora.pissa_init=true",),
    "lora.pissa_convert": ("lora.pissa_init=true", "lora.target=q_proj"),   # one module kind: a quick conversion
    "lora.create_new_adapter": ("model.adapter_name_or_path={files}/adapter",),
    "pref.ref_model_adapters": ("train.stage=dpo", "data.dataset=demo_pref", "pref.ref_model=builtin:tiny-random"),
    "pref.ref_model_quantization_bit": ("train.stage=dpo", "data.dataset=demo_pref", "pref.ref_model=builtin:tiny-random"),
    "quantization.device_map": ("train.do_train=false", "train.do_predict=true", "train.predict_with_generate=true",
                                "data.eval_dataset=demo_sft_eval", "quantization.bit=4"),
    "model.mixture_of_depths": ("train.finetuning_type=full",),
    "train.do_train": ("train.do_train=false", "export.dir=flag-effect-export"),
    "export.dir": (),
    "quantization": ("quantization.bit=4",),
    "quantization.bit": (),
    "export": ("export.dir=flag-effect-export",),
    "export.quantization_bit": ("export.dir=flag-effect-export", "export.quantization_dataset=demo_pt"),
    "export.quantization_dataset": ("export.dir=flag-effect-export", "export.quantization_bit=4",
                                    "export.quantization_dataset=demo_pt_eval"),
    "export.quantization_nsamples": ("export.dir=flag-effect-export", "export.quantization_bit=4",
                                     "export.quantization_dataset=demo_pt", "export.quantization_maxlen=32"),
    "export.device": ("export.dir=flag-effect-export", "export.quantization_bit=4",
                      "export.quantization_dataset=demo_pt"),
    "export.quantization_maxlen": ("export.dir=flag-effect-export", "export.quantization_bit=4",
                                   "export.quantization_dataset=demo_pt"),
    "generate": ("train.do_predict=true", "train.predict_with_generate=true", "data.eval_dataset=demo_sft_eval"),
    "generate.length_penalty": ("train.do_predict=true", "train.predict_with_generate=true",
                                "data.eval_dataset=demo_sft_eval", "generate.num_beams=2", "generate.do_sample=false"),
    "data.eval_num_beams": ("train.do_predict=true", "train.predict_with_generate=true",
                            "data.eval_dataset=demo_sft_eval"),
    "infer": ("train.do_predict=true", "train.predict_with_generate=true", "data.eval_dataset=demo_sft_eval"),
    "infer.vllm_maxlen": _PREDICT + ("infer.backend=vllm",),
    "infer.vllm_gpu_util": _PREDICT + ("infer.backend=vllm",),
    "infer.vllm_enforce_eager": _PREDICT + ("infer.backend=vllm",),
    "infer.vllm_max_lora_rank": _PREDICT + ("infer.backend=vllm", "model.adapter_name_or_path={files}/adapter"),
    "infer.vllm_config": _PREDICT + ("infer.backend=vllm",),
    "launch": ("launch.kind=ddp", "launch.nproc_per_node=2", "train.use_cpu=true"),
    "launch.kind": ("train.use_cpu=true",),
    "train.fp8_backend": ("train.fp8=true",),
    "train.fp8_enable_fsdp_float8_all_gather": ("train.fp8=true", "launch.kind=fsdp"),
    **{f"train.swanlab_{k}": ("train.report_to=swanlab",) for k in (
        "project", "workspace", "run_name", "mode", "api_key", "logdir", "lark_webhook_url")},
    "train.swanlab_lark_secret": ("train.report_to=swanlab", "train.swanlab_lark_webhook_url=https://example.org/h"),
    **{f"launch.ray_{k}": ("launch.kind=ray", "train.use_cpu=true") for k in (
        "num_workers", "run_name", "storage_path", "resources_per_worker", "placement_strategy", "init_kwargs")},
    "launch.ray_storage_filesystem": ("launch.kind=ray", "train.use_cpu=true", "launch.ray_storage_path=bucket/runs"),
    "launch.nproc_per_node": ("launch.kind=ddp", "train.use_cpu=true"),
    "launch.nnodes": ("launch.kind=ddp", "launch.nproc_per_node=2", "train.use_cpu=true", "launch.master_addr=10.0.0.1"),
    "launch.launcher": ("launch.kind=deepspeed", "launch.deepspeed=z2", "launch.nproc_per_node=2", "train.use_cpu=true"),
    "launch.deepspeed": ("launch.kind=deepspeed", "launch.deepspeed=z2", "launch.nproc_per_node=2", "train.use_cpu=true"),
    "launch.fsdp": ("launch.kind=fsdp",),
    "launch.fsdp_config": ("launch.kind=fsdp",),
    "launch.node_rank": ("launch.kind=ddp", "launch.nproc_per_node=2", "train.use_cpu=true", "launch.nnodes=2",
                         "launch.master_addr=10.0.0.1"),
    "launch.master_addr": ("launch.kind=ddp", "launch.nproc_per_node=2", "train.use_cpu=true", "launch.nnodes=2",
                           "launch.master_addr=10.0.0.1"),
    "launch.master_port": ("launch.kind=ddp", "launch.nproc_per_node=2", "train.use_cpu=true", "launch.nnodes=2",
                           "launch.master_addr=10.0.0.1"),
    "launch.rdzv_endpoint": ("launch.kind=ddp", "launch.nproc_per_node=2", "train.use_cpu=true", "launch.nnodes=2",
                             "launch.master_addr=10.0.0.1"),
    "train.eval_steps": ("train.eval_strategy=steps", "data.val_size=0.1"),
    "train.eval_strategy": ("data.val_size=0.1",),
    "train.load_best_model_at_end": ("train.eval_strategy=steps", "data.val_size=0.1"),
    "train.metric_for_best_model": ("train.eval_strategy=steps", "data.val_size=0.1"),
    "train.early_stopping_steps": ("train.eval_strategy=steps", "data.val_size=0.1",
                                   "train.metric_for_best_model=eval_loss"),
    "train.per_device_eval_batch_size": ("train.do_eval=true", "data.val_size=0.1"),
    "train.compute_accuracy": ("train.do_eval=true", "data.val_size=0.1"),
    "train.asft_alpha": ("train.use_asft_loss=true",),
    "train.eaft_alpha": ("train.use_eaft_loss=true",),
    "train.do_eval": ("data.val_size=0.1",),
    "train.predict_with_generate": _PREDICT,
    "train.do_predict": ("train.predict_with_generate=true", "data.eval_dataset=demo_sft_eval"),
    "data.eval_on_each_dataset": ("data.eval_dataset='demo_sft_eval,demo_sft_sharegpt_eval'", "train.do_eval=true"),
    "data.buffer_size": ("data.streaming=true", "train.max_steps=10"),
    "data.streaming": ("train.max_steps=10",),
    "data.interleave_probs": ("data.dataset='demo_sft,demo_sft_zh'", "data.mix_strategy=interleave_under"),
    "data.mix_strategy": ("data.dataset='demo_sft,demo_sft_zh'",),
    "model.init_special_tokens": ("model.new_special_tokens_config={files}/tokens.yaml", "model.resize_vocab=true",
                                  _MANY_TOKENS),
    "model.resize_vocab": (_MANY_TOKENS,),
    "model.adapter_folder": ("model.adapter_name_or_path={files}/adapter",),
    "model.offload_folder": _QUANT_INFER + ("quantization.device_map=auto",),
    "quantization.device_map": _QUANT_INFER,
    "model.use_reentrant_gc": (),
    **{f"train.{k}": ("train.enable_torch_profiler=true",) for k in (
        "profiler_output_dir", "profiler_wait_steps", "profiler_warmup_steps", "profiler_active_steps",
        "profiler_repeat", "profiler_record_shapes", "profiler_profile_memory", "profiler_with_stack")},
    # transformers' own training arguments that act only with another setting (rule trainer-field-context)
    **{f"train.{k}": ("train.dataloader_num_workers=1",) for k in (
        "dataloader_prefetch_factor", "dataloader_persistent_workers", "dataloader_multiprocessing_context")},
    **{f"train.{k}": ("train.do_eval=true", "data.val_size=0.1") for k in (
        "eval_delay", "eval_on_start", "eval_accumulation_steps", "prediction_loss_only", "eval_do_concat_batches",
        "bf16_full_eval", "fp16_full_eval")},
    **{f"train.{k}": ("launch.kind=ddp", "launch.nproc_per_node=2", "train.use_cpu=true") for k in (
        "ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_static_graph",
        "average_tokens_across_devices", "save_on_each_node", "log_on_each_node", "eval_use_gather_object")},
    **{f"train.{k}": ("train.push_to_hub=true",) for k in (
        "hub_model_id", "hub_strategy", "hub_private_repo", "hub_always_push", "hub_revision")},
    **{f"train.{k}": ("train.report_to=trackio",) for k in (
        "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id")},
    "train.greater_is_better": ("train.eval_strategy=steps", "data.val_size=0.1", "train.metric_for_best_model=eval_loss"),
    "serve": (),
    "run": (),
}

# --- the legal non-default value each parameter is set to (derived from the schema where this table is silent) -
VALUES: dict[str, str] = {
    "eval.task": "mc_demo_validation", "eval.task_dir": "{files}/tasks",   # make_files writes tasks/mc_demo
    "eval.save_dir": "{files}/mc_results", "eval.n_shot": "2",   # the dev pool has 5: more changes nothing
    # transformers' own training arguments: a value other than transformers' default
    "train.optim_args": "'beta1=0.9'", "train.average_tokens_across_devices": "false",
    "train.gradient_checkpointing": "false", "train.gradient_checkpointing_kwargs": "{use_reentrant:false}",
    "train.group_by_length": "true", "train.torch_compile_backend": "inductor",
    "train.log_on_each_node": "false", "train.logging_nan_inf_filter": "false", "train.project": "flag-effect",
    "train.trackio_space_id": "'me/space'", "train.trackio_bucket_id": "'me/bucket'",
    "train.trackio_static_space_id": "'me/static'", "train.eval_do_concat_batches": "false",
    "train.hub_model_id": "'me/model'", "train.hub_revision": "v2", "train.accelerator_config": "{split_batches:true}",
    "train.dataloader_pin_memory": "false", "train.dataloader_in_order": "false",
    "train.train_sampling_strategy": "group_by_length", "train.skip_memory_metrics": "false",
    "train.profiler_output_dir": "flag-effect-profile", "train.profile_modules": "'model.layers.*'",
    "model.name_or_path": "builtin:tiny-random",
    "model.adapter_name_or_path": "{files}/adapter",
    "model.adapter_folder": "sub",
    "model.model_revision": "v2",
    "model.add_tokens": "'<x1>,<x2>'",
    "model.add_special_tokens": "'<s1>'",
    "model.new_special_tokens": "'<s1>'",
    "model.new_special_tokens_config": "{files}/tokens.yaml",
    "model.init_special_tokens": "desc_init",
    "model.rope_scaling": "linear",
    "model.flash_attn": "sdpa",
    "model.mixture_of_depths": "convert",
    "model.moe_aux_loss_coef": "0.01",
    "data.template": "chatml",
    "data.dataset": "demo_sft_zh",
    "data.eval_dataset": "demo_sft_eval",
    "data.dataset_dir": "{files}/data",
    "data.media_dir": "{files}/media",
    "data.interleave_probs": "'0.3,0.7'",
    "data.mix_strategy": "interleave_under",
    "data.tool_format": "qwen",
    "data.default_system": "'Be brief.'",
    "data.tokenized_path": "flag-effect-tokens",
    "data.val_size": "0.1",
    "data.eval_on_each_dataset": "true",
    "data.max_samples": "7",
    "train.stage": "pt",
    "train.finetuning_type": "full",
    "train.output_dir": "flag-effect-out",
    "train.optim": "sgd",
    "train.lr_scheduler_type": "cosine",
    "train.lr_scheduler_kwargs": "{num_cycles:2}",
    "train.warmup_steps": "5",
    "train.warmup_ratio": "0.1",
    "train.eval_strategy": "epoch",
    "train.eval_steps": "7",
    "train.save_strategy": "epoch",
    "train.save_steps": "7",
    "train.metric_for_best_model": "eval_loss",
    "train.load_best_model_at_end": "true",
    "train.logging_dir": "flag-effect-logs",
    "train.logging_steps": "7",
    "train.report_to": "tensorboard",
    "train.run_name": "flag-effect",
    "train.log_level": "info",
    "train.log_level_replica": "error",
    "train.logging_strategy": "epoch",
    "train.max_steps": "10",
    "train.num_train_epochs": "2.0",
    "train.early_stopping_steps": "3",
    "train.predict_with_generate": "false",
    "train.padding_free": "false",
    "train.fp16_opt_level": "O2",
    "train.save_safetensors": "false",
    "train.callbacks": "[{_target_:transformers.EarlyStoppingCallback}]",
    "lora.target": "'q_proj,v_proj'",
    "lora.additional_target": "embed_tokens",
    "lora.rank": "4",
    "lora.alpha": "32",
    "lora.dropout": "0.1",
    "lora.loraplus_lr_ratio": "16",
    "lora.loraplus_lr_embedding": "1e-5",
    "lora.pissa_iter": "4",
    "freeze.trainable_layers": "1",
    "freeze.trainable_modules": "mlp",
    "freeze.extra_modules": "embed_tokens",
    "galore.target": "gate_proj",   # module names as in lora.target (a family name such as mlp matches nothing)
    "galore.proj_type": "reverse_std",
    "apollo.target": "gate_proj",
    "apollo.proj": "svd",
    "apollo.proj_type": "left",
    "apollo.scale_type": "tensor",
    "muon.adjust_lr": "original",
    "muon.momentum": "0.9",
    "oft.target": "'q_proj,v_proj'",
    "oft.rank": "4",
    "oft.block_size": "16",
    "oft.module_dropout": "0.1",
    "train.asft_alpha": "0.5",
    "train.eaft_alpha": "2.0",
    "badam.mode": "ratio",
    "badam.start_block": "1",
    "badam.switch_mode": "descending",
    "badam.switch_interval": "10",
    "badam.verbose": "1",
    "pref.loss": "ipo",
    "pref.ftx": "0.5",
    "pref.bco_weight": "0.5",
    "pref.ld_alpha": "0.5",
    "pref.ref_model": "builtin:tiny-random",
    "pref.ref_model_adapters": "{files}/adapter",
    "pref.ref_model_quantization_bit": "8",
    "pref.precompute_reference": "false",   # the default (null) picks the reference stage for this epoch run
    "ppo.reward_model": "builtin:tiny-random",
    "ppo.reward_model_adapters": "{files}/adapter",
    "ppo.reward_model_quantization_bit": "8",
    "ppo.reward_model_type": "full",
    "launch.master_port": "29501",
    "launch.ddp_backend": "mpi",
    "quantization.method": "hqq",
    "quantization.bit": "4",
    "quantization.type": "fp4",
    "quantization.device_map": "auto",
    "export.dir": "flag-effect-export",
    "export.size": "0.5",
    "export.device": "auto",
    "export.quantization_bit": "4",
    "export.quantization_dataset": "demo_pt",
    "export.quantization_nsamples": "2",
    "launch.deepspeed": "z3",
    "export.hub_model_id": "someone/flag-effect",
    "export.push_to": "flag-effect-remote",
    "generate.do_sample": "false",
    "generate.max_length": "2048",
    "generate.max_new_tokens": "64",
    "generate.length_penalty": "1.5",
    "generate.repetition_penalty": "1.2",
    "infer.backend": "vllm",
    "infer.dtype": "bfloat16",
    "infer.use_kv_cache": "false",
    "infer.use_cache": "false",
    "infer.vllm_config": "'{\"max_num_seqs\": 4}'",
    "infer.vllm_max_lora_rank": "64",
    "pref.ref_model": "builtin:tiny-random",
    "launch.kind": "ddp",
    "launch.launcher": "deepspeed",
    "launch.nproc_per_node": "2",
    "launch.master_addr": "10.0.0.2",
    "launch.rdzv_endpoint": "10.0.0.2:29400",
    "launch.deepspeed": "z3",
    "launch.fsdp": "shard_grad_op",
    "launch.fsdp_config": "{transformer_layer_cls_to_wrap:[LlamaDecoderLayer]}",
    "launch.local_rank": "0",
    "train.swanlab_lark_webhook_url": "https://example.org/hook",
    "train.swanlab_project": "flag-effect", "train.swanlab_workspace": "flag-team",
    "train.swanlab_run_name": "flag-run", "train.swanlab_api_key": "flag-key-123", "train.swanlab_lark_secret": "s3cret",
    "train.swanlab_logdir": "/tmp/flag-effect-swanlog",
    "launch.ray_num_workers": "2",
    "launch.ray_run_name": "flag-effect-run",
    "launch.ray_storage_path": "/tmp/flag-effect-ray",
    "launch.ray_storage_filesystem": "s3",
    "launch.ray_resources_per_worker": "{CPU:1}",
    "launch.ray_placement_strategy": "SPREAD",
    "launch.ray_init_kwargs": "{num_cpus:2}",
    "run.name": "flag-effect",
    "vision.image_resolution": "800",
    "vision.video_resolution": "200",
    "run.force": "[train]",
    "run.cache_root": "flag-effect-cache",
    "run.objective": "eval_accuracy",
    "run.objective_mode": "max",
    "pipeline.before": "{sft:{train.stage:sft}}",
    "serve.host": "0.0.0.0",
    "serve.model_name": "flag-effect",
    "model.cache_dir": "flag-effect-hub",
    "model.offload_folder": "flag-effect-offload",
    "model.hf_hub_token": "hf_flagEffect",
    "model.ms_hub_token": "ms-flag-effect",
    "model.om_hub_token": "om-flag-effect",
}


def make_files(folder: Path) -> Path:
    """The files some values name (``{files}/...``): an adapter folder, a special-token file, a dataset folder."""
    import shutil

    from tests.unit.conftest import ROOT

    (folder / "adapter").mkdir()
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (folder / "tokens.yaml").write_text("'<s1>': a new token\n")
    shutil.copytree(ROOT / "data", folder / "data")
    (folder / "media").mkdir()
    from llmpipe.data.mc_synthetic import write_lf_layout

    write_lf_layout(folder / "tasks")   # the bundled mc_demo in LLaMA-Factory's layout (eval.task_dir)
    return folder


def literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def value_for(p) -> str:
    """The override value of parameter ``p`` (a flags.Param): the table's, else one derived from the schema."""
    if p.path in VALUES:
        return VALUES[p.path]
    m, d = p.meta, p.default
    if m.choices:
        return literal(next(c for c in m.choices if c != d))
    if p.type.startswith("bool"):
        return literal(not d if d is not None else True)
    if p.type.startswith("int"):
        lo = m.ge if m.ge is not None else (m.gt + 1 if m.gt is not None else 1)
        v = int(d) + 1 if isinstance(d, int) and not isinstance(d, bool) else int(lo) + 1
        if m.le is not None and v > m.le:
            v = int(d) - 1
        return literal(v)
    if p.type.startswith("float"):
        if isinstance(d, (int, float)) and d:
            v = d / 2
        else:
            v = 0.1
        return literal(v)
    raise KeyError(f"{p.path}: no value to set; add one to VALUES in {__file__}")


def context_for(path: str) -> tuple[str, ...]:
    best = max((k for k in CONTEXT if path == k or path.startswith(k + ".") or path.split(".", 1)[0] == k),
               key=len, default=None)
    return CONTEXT[best] if best is not None else ()


# --- accepted and ignored today: the shrinking list of gaps (each with its reason); a parameter listed here that
# shows its effect fails the test until it is removed from the list --------------------------------------------
KNOWN_IGNORED: dict[str, str] = {}

# Parameters whose destination has no probe yet: the test still checks their fingerprints (where a stage reads
# them) but cannot see the value arrive. Write the probe (flag_probes.PROBES, destination in paramdoc) and remove
# the entry; this list, too, only shrinks.
_VISION = ("the load stage's image tokens / the trained parameters (tests/integration/test_vlm.py measures them); "
           "probe to write")
UNPROBED: dict[str, str] = {
    **{f"vision.{k}": _VISION for k in ("image_max_pixels", "image_min_pixels", "image_resolution",
                                        "freeze_vision_tower", "freeze_multi_modal_projector",
                                        "freeze_language_model", "train_mm_proj_only")},
    **{f"vision.{k}": "the load stage's sampled frames / video tokens (tests/unit/data/test_mm_video.py measures "
       "them); probe to write" for k in ("video_max_pixels", "video_min_pixels", "video_fps", "video_maxlen",
                                         "video_resolution")},
}

# Refused with the key named for a reason other than a missing GPU (each with the reason).
REFUSED: dict[str, str] = {
    "train.swanlab_api_key": "logs in only with train.swanlab_mode=cloud, which needs the network (refused offline)",
    "vision.use_audio_in_video": "Qwen2.5-Omni's thinker only (tests/integration/test_omni.py measures its effect); "
                                 "tiny_vl reads no audio (vision-flag-fits-model)",
    "vision.audio_sampling_rate": "tiny_vl (qwen2_vl) reads no audio (vision-flag-fits-model)",
    "vision.image_do_pan_and_scan": "Gemma 3 only; tiny_vl is qwen2_vl (vision-flag-fits-model)",
    "vision.crop_to_patches": "InternVL only; tiny_vl is qwen2_vl (vision-flag-fits-model)",
    "model.mixture_of_depths": "needs the MoD package, which this machine lacks",
    "train.save_safetensors": "false: transformers 5 writes safetensors only (.bin cannot be written)",
    "model.use_fast_tokenizer": "false: transformers 5 has one tokenizer per model type (use_fast is discarded)",
    "model.low_cpu_mem_usage": "false: transformers 5 always loads with low memory use",
    "model.ms_hub_token": "llmpipe has no ModelScope hub source",
    "model.om_hub_token": "llmpipe has no Modelers (openmind) hub source",
    "train.fp16_opt_level": "an apex AMP setting; transformers 5 removed apex",
    "model.moe_aux_loss_coef": "the tiny model has no MoE router (model-moe-aux-loss, from its config)",
    "train.predict_with_generate": "false with do_predict: prediction always generates (data-predict)",
    **{f"infer.sglang_{k}": "llmpipe has no SGLang engine (infer-sglang-settings)" for k in (
        "maxlen", "mem_fraction", "tp_size")},
}
