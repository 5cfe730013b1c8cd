"""Unsloth (model.use_unsloth; CUDA only, LoRA only): the base model is loaded through
unsloth.FastLanguageModel, whose patched kernels then run the forward and backward passes, and the run's
initial adapter (from the adapt stage) is put on it through Unsloth's own PEFT wrapper, with the adapter's
saved weights. Pre-flight refuses Unsloth without a GPU, without the package, and for freeze/full training.
Not exercised on llmpipe's CPU-only CI."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def load(source: str, cfg: Any, dtype):
    from unsloth import FastLanguageModel

    from llmpipe.models.hub import hub_kwargs

    q = cfg.quantization
    model, _ = FastLanguageModel.from_pretrained(
        model_name=source, max_seq_length=int(cfg.data.cutoff_len), dtype=dtype,
        load_in_4bit=q.bit == 4 and q.method == "bnb", load_in_8bit=q.bit == 8 and q.method == "bnb",
        trust_remote_code=cfg.model.trust_remote_code, token=hub_kwargs(cfg.model).get("token"),
    )
    return model


def attach_adapter(model, adapter_dir: Path, cfg: Any):
    from peft import PeftConfig, set_peft_model_state_dict
    from safetensors.torch import load_file
    from unsloth import FastLanguageModel

    pc = PeftConfig.from_pretrained(str(adapter_dir))
    model = FastLanguageModel.get_peft_model(
        model, r=pc.r, target_modules=sorted(pc.target_modules), lora_alpha=pc.lora_alpha,
        lora_dropout=pc.lora_dropout, bias="none", use_rslora=pc.use_rslora, modules_to_save=pc.modules_to_save,
        use_gradient_checkpointing=False if cfg.model.disable_gradient_checkpointing else "unsloth",
        random_state=int(cfg.train.seed), max_seq_length=int(cfg.data.cutoff_len),
    )
    set_peft_model_state_dict(model, load_file(str(Path(adapter_dir) / "adapter_model.safetensors")))
    return model
