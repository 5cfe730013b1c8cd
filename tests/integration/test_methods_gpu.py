"""GPU-only paths of the fine-tuning methods, through the real pipeline on the built-in tiny model: QLoRA and
S²-Attn in bf16 on CUDA, FlashAttention-2, Liger kernels, Unsloth, EETQ. Skipped without CUDA (and without
the optional package each one needs)."""
from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

from test_methods import QUICK, base_model, captured, check_reload_and_learning, run, store  # noqa: E402,F401


def needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"needs the {module} package")


@needs("bitsandbytes")
def test_qlora_bnb4_bf16_on_gpu(store, captured):
    from peft import PeftModel

    result, cfg = run(store, "quantization=bnb4", "train.bf16=true", "model.upcast_layernorm=true")
    quantized = base_model(cfg, store, training=True)
    reloaded = PeftModel.from_pretrained(quantized, str(result.outputs["train"] / "adapter"))
    check_reload_and_learning(captured, reloaded, base_model(cfg, store, training=True))


def test_shift_attn_full_bf16_on_gpu(store, captured):
    from transformers import AutoModelForCausalLM

    result, cfg = run(store, "train.finetuning_type=full", "train.learning_rate=5e-4", "train.bf16=true",
                      "model.shift_attn=true")
    model = AutoModelForCausalLM.from_pretrained(result.outputs["train"] / "model", dtype=torch.float32).cuda()
    check_reload_and_learning(captured, model, base_model(cfg, store).cuda())


@needs("flash_attn")
def test_flash_attention_2(store, captured):
    result, _ = run(store, "train.bf16=true", "model.flash_attn=fa2")
    assert result.metrics["train"]["train_loss"] > 0


@needs("liger_kernel")
def test_liger_kernel(store, captured):
    result, _ = run(store, "train.finetuning_type=full", "train.learning_rate=5e-4", "train.bf16=true",
                    "model.enable_liger_kernel=true")
    assert result.metrics["train"]["train_loss"] > 0


@needs("unsloth")
def test_unsloth_lora(store, captured):
    result, _ = run(store, "train.bf16=true", "model.use_unsloth=true")
    assert (result.outputs["train"] / "adapter" / "adapter_model.safetensors").exists()


@needs("eetq")
def test_eetq_qlora(store, captured):
    result, _ = run(store, "quantization.method=eetq", "quantization.bit=8", "train.bf16=true")
    assert (result.outputs["train"] / "adapter" / "adapter_model.safetensors").exists()
