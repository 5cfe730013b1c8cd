"""Model loading options at the model level, on the micro Llama of methods_support: RoPE scaling, MoE loss,
upcasting, train_from_scratch, S²-Attn, on-the-fly quantization (QLoRA) and the parameter-status printout."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow   # builds and trains micro models (a few seconds in all)

from methods_support import (  # noqa: F401  (model_dir is a fixture)
    MICRO, WORDS, X, cfg_of, logits, micro_model, micro_tokenizer, model_dir, train_steps, trainable,
)


# --- loading options ------------------------------------------------------------------------------------------

def test_rope_scaling_factor_from_cutoff_len(model_dir):
    from llmpipe.models.loading import load_causal_lm

    plain = logits(load_causal_lm(model_dir, cfg_of()))
    seen = []
    m = load_causal_lm(model_dir, cfg_of("model.rope_scaling=linear", "data.cutoff_len=256"), log=seen.append)
    assert m.config.rope_parameters["rope_type"] == "linear" and m.config.rope_parameters["factor"] == 2.0
    assert m.config.max_position_embeddings == 256 and "factor 2" in seen[0]
    assert not torch.allclose(logits(m), plain, atol=1e-3)
    for kind in ("dynamic", "yarn", "llama3"):
        m = load_causal_lm(model_dir, cfg_of(f"model.rope_scaling={kind}", "data.cutoff_len=256"), log=seen.append)
        assert m.config.rope_parameters["original_max_position_embeddings"] == 128
    m = load_causal_lm(model_dir, cfg_of("model.rope_scaling=linear", "data.cutoff_len=64"), log=seen.append)
    assert m.config.rope_parameters["factor"] == 1.0 and "fits" in seen[-1]
    assert torch.allclose(logits(m), plain, atol=1e-5)


def test_moe_aux_loss_coefficient(tmp_path):
    from transformers import MixtralConfig, MixtralForCausalLM

    from llmpipe.models.loading import load_causal_lm

    torch.manual_seed(0)
    MixtralForCausalLM(MixtralConfig(**{k: v for k, v in MICRO.items()}, num_local_experts=4,
                                     num_experts_per_tok=2)).save_pretrained(tmp_path)
    losses = {}
    for coef in (0.0, 0.5):
        m = load_causal_lm(str(tmp_path), cfg_of(f"model.moe_aux_loss_coef={coef}"), training=True,
                           log=lambda s: None)
        assert m.config.router_aux_loss_coef == coef and m.config.output_router_logits
        losses[coef] = m(input_ids=X, labels=X).loss.item()
    assert losses[0.5] > losses[0.0]                                         # the router loss is added


def test_moe_coefficient_is_harmless_on_dense_models(model_dir):
    from llmpipe.models.loading import load_causal_lm

    seen = []
    load_causal_lm(model_dir, cfg_of("model.moe_aux_loss_coef=0.1"), training=True, log=seen.append)
    assert any("not a mixture-of-experts model" in s for s in seen)


def test_upcast_layernorm_and_lmhead_output():
    from llmpipe.models.patches import training_patches

    m = micro_model(dtype=torch.bfloat16)
    training_patches(m, cfg_of("model.upcast_layernorm=true", "model.upcast_lmhead_output=true"), log=lambda s: None)
    assert m.model.norm.weight.dtype == torch.float32 and m.model.layers[0].input_layernorm.weight.dtype == torch.float32
    assert m.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    out = m(input_ids=X, labels=X)                                            # no autocast: dtypes must still meet
    assert out.logits.dtype == torch.float32
    out.loss.backward()


def test_train_from_scratch_is_random_and_seeded(model_dir):
    from llmpipe.models.loading import load_causal_lm

    cfg = cfg_of("model.train_from_scratch=true")
    a, b = load_causal_lm(model_dir, cfg, log=lambda s: None), load_causal_lm(model_dir, cfg, log=lambda s: None)
    assert torch.equal(logits(a), logits(b))
    assert not torch.allclose(logits(a), logits(load_causal_lm(model_dir, cfg_of())), atol=1e-3)


# --- S²-Attn ---------------------------------------------------------------------------------------------------

def test_shift_attn_groups_match_a_reference_mask():
    import math

    import torch.nn.functional as F

    from llmpipe.models.shift_attn import group_attention

    torch.manual_seed(0)
    b, h, n, d = 2, 4, 13, 8
    q, k, v = (torch.randn(b, h, n, d) for _ in range(3))
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[1, 10:] = False
    g = math.ceil(n / 4)
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    for off in (0, g // 2):
        allowed = (j <= i) & ((i + off) // g == (j + off) // g)
        mask = (allowed[None, None] & valid[:, None, None, :]) | torch.eye(n, dtype=torch.bool)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        assert torch.allclose(group_attention(q, k, v, valid, g, off, d ** -0.5), ref, atol=1e-5)


def test_shift_attn_in_a_model_is_causal_local_and_full_at_eval():
    from llmpipe.models import shift_attn

    m = micro_model()
    full_eval = logits(m)
    shift_attn.enable(m)
    assert torch.allclose(logits(m), full_eval, atol=1e-5)                   # eval: ordinary attention
    m.train()
    out = m(input_ids=X).logits
    changed = X.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 96
    out2 = m(input_ids=changed).logits
    assert torch.equal(out[:, :6], out2[:, :6])                               # nothing sees a later token
    assert not torch.allclose(m(input_ids=X).logits, full_eval, atol=1e-3)   # training: grouped attention
    m(input_ids=X, labels=X).loss.backward()


# --- on-the-fly quantization ------------------------------------------------------------------------------------

@pytest.mark.parametrize("quant", ["quantization=bnb4", "quantization=bnb4 quantization.type=fp4 "
                                   "quantization.double_quantization=false", "quantization=bnb8", "quantization=hqq4"])
def test_qlora_trains_and_adapter_reloads_on_the_quantized_base(tmp_path, model_dir, quant):
    pytest.importorskip("bitsandbytes" if "bnb" in quant else "hqq")
    from peft import PeftModel, get_peft_model

    from llmpipe.models.adapters import lora_config
    from llmpipe.models.loading import load_causal_lm
    from llmpipe.models.quantization import is_quantized, prepare_for_training

    cfg = cfg_of(*quant.split(), "lora.rank=4")
    model = prepare_for_training(load_causal_lm(model_dir, cfg, training=True, log=lambda s: None), cfg)
    assert is_quantized(model)
    if "bnb4" in quant:
        qc = model.config.quantization_config
        assert (qc.bnb_4bit_quant_type, qc.bnb_4bit_use_double_quant) == (cfg.quantization.type,
                                                                           cfg.quantization.double_quantization)
    assert "Linear" in type(model.model.layers[0].self_attn.q_proj).__name__ and \
        type(model.model.layers[0].self_attn.q_proj) is not torch.nn.Linear
    peft = get_peft_model(model, lora_config(cfg, micro_model()))
    base = logits(peft)
    trained = logits(train_steps(peft, lr=3e-2))
    assert not torch.allclose(trained, base, atol=1e-3)
    peft.save_pretrained(tmp_path / "adapter")
    again = load_causal_lm(model_dir, cfg, training=True, log=lambda s: None)
    reloaded = PeftModel.from_pretrained(again, str(tmp_path / "adapter"))
    assert torch.allclose(logits(reloaded), trained, atol=1e-4)


def test_eetq_is_a_clear_error_without_cuda():
    from llmpipe.models.quantization import QuantizationError, load_kwargs

    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    with pytest.raises(QuantizationError, match="CUDA GPU"):
        load_kwargs(cfg_of("quantization.method=eetq", "quantization.bit=8"), torch.float32)


def test_param_status_lines():
    from llmpipe.models.freeze import apply_freeze
    from llmpipe.models.patches import param_status

    m = micro_model()
    apply_freeze(m, cfg_of("freeze.trainable_layers=1"))
    lines = param_status(m)
    assert len(lines) == len(list(m.named_parameters()))
    assert any(line.startswith("model.layers.1.mlp.up_proj.weight  (128, 64)  float32  cpu  trainable") for line in lines)
    assert any("layers.0." in line and line.endswith("frozen") for line in lines)
