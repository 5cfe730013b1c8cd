"""LLaMA-Factory's v1 config (``USE_V1=1``; nested ``peft_config``, ``dist_config``... blocks and a
``train_dataset`` YAML of named datasets) -> the flat v0 keys ``import-llamafactory`` maps, with a note for
each translation. What v1 asks for and llmpipe cannot do is refused with the reason.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

# keys that only the v1 format has (a v0 file never has a nested block or these names)
V1_MARKERS = ("model_class", "peft_config", "dist_config", "kernel_config", "train_dataset", "micro_batch_size",
              "global_batch_size", "quant_config", "optim_config", "init_config", "batching_strategy",
              "sample_backend", "cp_mode", "cp_size")


def is_v1(data: dict) -> bool:
    return any(k in data for k in V1_MARKERS) or isinstance(data.get("model"), str)


def _drop(notes: list[str], key: str, value: Any, why: str) -> None:
    notes.append(f"{key}: {value!r} dropped: {why}")


def to_v0(data: dict, src: Path, notes: list[str], errors: list[str]) -> dict:
    """Flat v0 keys for the v1 mapping ``data`` (read from ``src``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "model":
            out["model_name_or_path"] = value
        elif key == "model_class":
            if value not in ("llm", None):
                notes.append(f"model_class: {value!r}: llmpipe picks the model class from the model's config")
            else:
                _drop(notes, key, value, "llmpipe picks the model class from the model's config")
        elif key == "peft_config":
            _peft(value or {}, out, notes, errors)
        elif key == "kernel_config":
            _kernels(value or {}, out, notes, errors)
        elif key == "dist_config":
            _dist(value or {}, out, notes, errors)
        elif key == "init_config":
            _drop(notes, key, value, "llmpipe loads weights with low_cpu_mem_usage (model.low_cpu_mem_usage)")
        elif key == "quant_config":
            if value:
                out["quantization_method"] = value.get("name", "bnb")
                if "quantization_bit" in value:
                    out["quantization_bit"] = value["quantization_bit"]
                extra = set(value) - {"name", "quantization_bit"}
                if extra:
                    errors.append(f"quant_config: {', '.join(sorted(extra))}: no llmpipe equivalent")
        elif key == "optim_config":
            _optim(value or {}, out, notes, errors)
        elif key == "lr_scheduler_config":
            if value:
                if "name" in value:
                    out["lr_scheduler_type"] = value["name"]
                rest = {k: v for k, v in value.items() if k != "name"}
                if rest:
                    out["lr_scheduler_kwargs"] = rest
        elif key == "train_dataset":
            _datasets(value, src, out, notes, errors, "dataset")
        elif key == "eval_dataset":
            _datasets(value, src, out, notes, errors, "eval_dataset")
        elif key == "micro_batch_size":
            out["per_device_train_batch_size"] = value
        elif key == "global_batch_size":
            micro = data.get("micro_batch_size", 1) or 1
            if value and value % micro == 0:
                out["gradient_accumulation_steps"] = value // micro
                notes.append(f"global_batch_size: {value} -> gradient_accumulation_steps: {value // micro} (one"
                             " process; with n processes set train.gradient_accumulation_steps="
                             f"{value // micro}/n)")
            else:
                errors.append(f"global_batch_size: {value!r} is not a multiple of micro_batch_size {micro}")
        elif key == "batching_strategy":
            if value == "normal":
                _drop(notes, key, value, "padded batches are llmpipe's default")
            elif value == "padding_free":
                out["train.padding_free"] = True
                notes.append("batching_strategy: padding_free -> train.padding_free: true")
            else:
                errors.append(f"batching_strategy: {value!r}: dynamic (token-budget) batching is not in llmpipe;"
                              " use batching_strategy normal or padding_free")
        elif key == "sample_backend":
            out["infer_backend"] = {"hf": "huggingface"}.get(value, value)
        elif key == "cp_mode":
            if (data.get("cp_size") or 1) > 1:
                errors.append(f"cp_mode: {value!r}: context parallelism (Ulysses/ring) is not in llmpipe")
            else:
                _drop(notes, key, value, "cp_size is 1 (no context parallelism)")
        elif key == "cp_size":
            if value not in (1, None):
                errors.append(f"cp_size: {value!r}: context parallelism is not in llmpipe")
        elif key == "flash_attn" and value in ("flash_attention_2", "flash_attention_3", "sdpa", "eager"):
            out["flash_attn"] = {"flash_attention_2": "fa2", "flash_attention_3": "fa3", "eager": "disabled"}.get(
                value, value)
            notes.append(f"flash_attn: {value} -> model.flash_attn: {out['flash_attn']}")
        else:
            out[key] = value
    if "dataset" in out and "stage" not in out:
        out["stage"] = "dpo" if out.pop("_pairs", False) else "sft"
        notes.append(f"stage: {out['stage']} (v1 takes the stage from the command, `llamafactory-cli "
                     f"{'dpo' if out['stage'] == 'dpo' else 'sft'}`; read from the dataset converters)")
        out["do_train"] = True
    out.pop("_pairs", None)
    return out


def _peft(cfg: dict, out: dict, notes: list[str], errors: list[str]) -> None:
    names = {"r": "lora_rank", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
             "target_modules": "lora_target", "freeze_trainable_layers": "freeze_trainable_layers",
             "freeze_trainable_modules": "freeze_trainable_modules", "freeze_extra_modules": "freeze_extra_modules",
             "adapter_name_or_path": "adapter_name_or_path", "export_dir": "export_dir",
             "export_size": "export_size", "infer_dtype": "infer_dtype"}
    name = cfg.get("name")
    if name in ("lora", "freeze", "full"):
        if not (name == "lora" and cfg.get("export_dir")):   # a merge config: the adapter is loaded, not trained
            out["finetuning_type"] = name
    elif name is not None:
        errors.append(f"peft_config.name: {name!r}: llmpipe fine-tunes with lora, freeze or full")
    for k, v in cfg.items():
        if k == "name":
            continue
        if k in names:
            out[names[k]] = v
            if names[k] != k:
                notes.append(f"peft_config.{k} -> {names[k]}")
        else:
            out[k] = v   # the v0 flag of the same name, checked by the flag table


def _kernels(cfg: dict, out: dict, notes: list[str], errors: list[str]) -> None:
    names = [n.strip() for n in str(cfg.get("name", "auto")).split(",") if n.strip()]
    for n in names:
        if n == "auto":
            _drop(notes, "kernel_config.name", n, "llmpipe uses the kernels the model's attention setting selects")
        elif n == "liger_kernel":
            out["enable_liger_kernel"] = True
            notes.append("kernel_config.name: liger_kernel -> model.enable_liger_kernel: true")
        else:
            errors.append(f"kernel_config.name: {n!r}: no llmpipe equivalent (llmpipe patches only Liger kernels)")
    for k in set(cfg) - {"name"}:
        errors.append(f"kernel_config.{k}: no llmpipe equivalent")


def _dist(cfg: dict, out: dict, notes: list[str], errors: list[str]) -> None:
    name = cfg.get("name")
    if name == "fsdp2":
        out["_launch"] = "fsdp"   # the launch option, so that launch=<option> on the command line replaces it
        notes.append("dist_config.name: fsdp2 -> launch=fsdp (torch FSDP, full_shard auto_wrap, under torchrun;"
                     " set launch.nproc_per_node to your GPU count)")
    elif name == "deepspeed":
        if cfg.get("config_file"):
            out["deepspeed"] = cfg["config_file"]
        else:
            errors.append("dist_config: deepspeed without config_file")
    elif name is not None:
        errors.append(f"dist_config.name: {name!r}: llmpipe distributes with DeepSpeed or torch FSDP"
                      " (launch=deepspeed_z3, launch=fsdp)")
    for k, v in cfg.items():
        if k in ("name", "config_file"):
            continue
        if v is None:
            _drop(notes, f"dist_config.{k}", v, "unset")
        else:
            errors.append(f"dist_config.{k}: {v!r}: no llmpipe equivalent")


def _optim(cfg: dict, out: dict, notes: list[str], errors: list[str]) -> None:
    name = cfg.get("name")
    if name == "muon":
        out["use_muon"] = True   # the v0 flag (muon.use_muon); AdamW settings below go to the rest of the weights
    elif name:
        out["optim"] = name
    for k, v in cfg.items():
        if k == "name":
            continue
        if name == "muon" and k in ("momentum", "nesterov", "ns_steps"):
            out[f"muon.{k}"] = v
            continue
        if k in ("lr", "learning_rate"):
            out["learning_rate"] = v
        elif k in ("wd", "weight_decay"):
            out["weight_decay"] = v
        elif k in ("adamw_betas", "betas") and isinstance(v, list) and len(v) == 2:
            out["adam_beta1"], out["adam_beta2"] = v
        elif k in ("adamw_eps", "eps"):
            out["adam_epsilon"] = v
        else:
            errors.append(f"optim_config.{k}: no llmpipe equivalent")


def _datasets(value: Any, src: Path, out: dict, notes: list[str], errors: list[str], key: str) -> None:
    """A v1 dataset file (``name: {path, source, converter, size, split}``) -> data.dataset paths."""
    import yaml

    path = _find(str(value), src)
    if path is None:
        errors.append(f"train_dataset: {value!r}: file not found (looked beside {src} and in its parent folders)")
        return
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        errors.append(f"train_dataset: {path}: not a readable YAML ({e})")
        return
    names, sizes, pairs = [], set(), []
    for name, d in spec.items():
        d = d or {}
        if d.get("source", "local") == "local":
            found = _find(str(d.get("path", "")), src)
            names.append(str(found) if found else str(d.get("path")))
        else:
            names.append(str(d.get("path")))
            if d.get("split", "train") != "train":
                errors.append(f"{value}: {name}: split {d['split']!r}: llmpipe reads a hub dataset's train split"
                              " (download that split to a file)")
        sizes.add(d.get("size"))
        pairs.append(d.get("converter") == "pair")
    out[key] = ",".join(names)
    notes.append(f"{'train_dataset' if key == 'dataset' else key}: {value} -> data.{key}:"
                 f" {out[key]} (the files its entries name; llmpipe detects each file's format)")
    sizes.discard(None)
    if len(sizes) == 1 and key == "dataset":
        out["max_samples"] = sizes.pop()
        notes.append(f"size: {out['max_samples']} -> data.max_samples (per dataset)")
    elif sizes:
        notes.append(f"{value}: different sizes per dataset ({sorted(sizes)}) are not imported: llmpipe's"
                     " data.max_samples applies to every dataset")
    if key == "dataset" and pairs and all(pairs):
        out["_pairs"] = True


def _find(rel: str, src: Path) -> Path | None:
    """``rel`` as LLaMA-Factory resolves it (from the folder it runs in): tried from the current folder, then
    from the YAML's folder and each folder above it."""
    p = Path(rel)
    if p.is_absolute():
        return p if p.exists() else None
    if p.exists():
        return p.resolve()
    for base in [src.resolve().parent, *src.resolve().parents]:
        if (base / p).exists():
            return (base / p).resolve()
    return None
