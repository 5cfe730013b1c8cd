"""Fine-tuning methods at the model level, on a micro Llama built in the test (no built-in model needed):
LoRA configuration and its variants (PiSSA residual and conversion), adapters merged/resumed, freeze,
LLaMA Pro expansion, new tokens and resized embeddings, RoPE scaling, MoE loss, upcasting, S²-Attn,
on-the-fly quantization, train_from_scratch. Every test checks the effect that defines the option."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow   # builds and trains micro models (a few seconds in all)

MICRO = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True)
WORDS = ["[UNK]", "[PAD]"] + [f"w{i}" for i in range(94)]


def cfg_of(*overrides: str):
    from omegaconf import OmegaConf

    from llmpipe.config.compose import compose

    return OmegaConf.to_object(compose(["model=tiny", "data.dataset=demo_sft", *overrides]))


def micro_model(seed: int = 0, dtype=None, **over):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**MICRO, **over}))
    return model.to(dtype) if dtype else model


def micro_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("micro")
    micro_model().save_pretrained(path)
    micro_tokenizer().save_pretrained(path)
    return str(path)


X = torch.randint(2, 96, (2, 12), generator=torch.Generator().manual_seed(1))


def logits(model, x=X):
    model.eval()
    with torch.no_grad():
        return model(input_ids=x).logits.float()


def train_steps(model, steps: int = 3, lr: float = 1e-2):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        loss = model(input_ids=X, labels=X).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- LoRA ----------------------------------------------------------------------------------------------------

def test_lora_config_all_linear_alpha_and_counts():
    from peft import get_peft_model

    from llmpipe.models.adapters import lora_config

    model = micro_model()
    lc = lora_config(cfg_of("lora.rank=4", "lora.additional_target=model.norm", "lora=rslora"), model)
    assert lc.r == 4 and lc.lora_alpha == 8 and lc.use_rslora and not lc.use_dora
    assert sorted(lc.target_modules) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    peft = get_peft_model(model, lc)
    linears = [m for n, m in micro_model().named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n]
    expected = sum(4 * (m.in_features + m.out_features) for m in linears) + MICRO["hidden_size"]   # + model.norm
    assert trainable(peft) == expected
    dora = get_peft_model(micro_model(), lora_config(cfg_of("lora=dora", "lora.rank=4"), micro_model()))
    assert trainable(dora) == expected - MICRO["hidden_size"] + sum(m.out_features for m in linears)  # magnitudes


def test_pissa_residual_rebuilt_exactly_and_converted_to_plain_lora(tmp_path):
    from peft import PeftModel, get_peft_model

    from llmpipe.models.adapters import load_trainable, lora_config, save_adapter

    cfg = cfg_of("lora=pissa", "lora.rank=4")
    base_logits = logits(micro_model())
    initial = get_peft_model(micro_model(), lora_config(cfg, micro_model()))   # what the adapt stage publishes
    initial.save_pretrained(tmp_path / "init")
    model = load_trainable(micro_model(), tmp_path / "init", cfg)               # what the train stage trains
    assert torch.allclose(logits(model), base_logits, atol=1e-4)                # W_res + B0 A0 = W
    qproj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert not torch.allclose(qproj.base_layer.weight, micro_model().model.layers[0].self_attn.q_proj.weight)
    trained = logits(train_steps(model))
    assert save_adapter(model, tmp_path / "out", cfg, tmp_path / "init") != "adapter"
    saved = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert saved["r"] == 8 and saved["init_lora_weights"] is True               # [B | B0] [A; -A0]
    reloaded = PeftModel.from_pretrained(micro_model(), str(tmp_path / "out"))  # on the ORIGINAL base
    assert torch.allclose(logits(reloaded), trained, atol=1e-4)
    assert torch.allclose(logits(reloaded.merge_and_unload()), trained, atol=1e-4)


def test_pissa_conversion_keeps_the_weights_trained_in_full(tmp_path):
    """Regression: PEFT's PiSSA conversion keeps only lora_A/lora_B. A reward model's score head (SEQ_CLS,
    modules_to_save) made it fail with KeyError 'base_model.model.score.weight'; lora.additional_target
    weights were dropped silently. Both are kept now, and the converted adapter reproduces the trained model."""
    from peft import PeftModel, get_peft_model
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from llmpipe.models.adapters import load_trainable, lora_config, save_adapter

    def seq_cls():
        torch.manual_seed(0)
        return LlamaForSequenceClassification(LlamaConfig(**MICRO, num_labels=1, pad_token_id=1))

    cases = [("SEQ_CLS", seq_cls, [], lambda m: m(input_ids=X).logits.sum(), "base_model.model.score.weight"),
             ("CAUSAL_LM", micro_model, ["lora.additional_target=embed_tokens"],
              lambda m: m(input_ids=X, labels=X).loss, "base_model.model.model.embed_tokens.weight")]
    for task, build, extra, loss_of, key in cases:
        cfg = cfg_of("lora=pissa", "lora.rank=4", *extra)
        conf = lora_config(cfg, build(), task_type=task)
        if task == "SEQ_CLS":
            conf.modules_to_save = ["score"]
        get_peft_model(build(), conf).save_pretrained(tmp_path / task / "init")
        model = load_trainable(build(), tmp_path / task / "init", cfg)
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(3):
            loss_of(model).backward()
            opt.step()
            opt.zero_grad()
        model.eval()
        with torch.no_grad():
            trained = model(input_ids=X).logits.float()
        save_adapter(model, tmp_path / task / "out", cfg, tmp_path / task / "init")
        from safetensors.torch import load_file

        assert key in load_file(str(tmp_path / task / "out" / "adapter_model.safetensors")), task
        reloaded = PeftModel.from_pretrained(build(), str(tmp_path / task / "out")).eval()   # the ORIGINAL base
        with torch.no_grad():
            assert torch.allclose(reloaded(input_ids=X).logits.float(), trained, atol=1e-4), task


def _random_adapter(path, seed):
    from peft import LoraConfig, get_peft_model

    model = micro_model()
    torch.manual_seed(seed)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(path)
    return peft


def test_adapters_all_but_last_merged_last_resumed(tmp_path, model_dir):
    from llmpipe.models.adapters import merge_adapters, split_adapters
    from llmpipe.models.loading import load_causal_lm

    a = _random_adapter(tmp_path / "a" / "sub", 1)
    b = _random_adapter(tmp_path / "b" / "sub", 2)
    refs = f"{tmp_path / 'a'},{tmp_path / 'b'}"
    cfg = cfg_of(f"model.adapter_name_or_path='{refs}'", "model.adapter_folder=sub")
    assert split_adapters(cfg) == ([str(tmp_path / "a")], str(tmp_path / "b"))
    base_a = load_causal_lm(model_dir, cfg)                                     # base + a merged, b not
    assert torch.allclose(logits(base_a), logits(a), atol=1e-5)
    assert not torch.allclose(logits(base_a), logits(b), atol=1e-3)
    new = cfg_of(f"model.adapter_name_or_path='{refs}'", "model.adapter_folder=sub", "lora.create_new_adapter=true")
    assert split_adapters(new) == ([str(tmp_path / "a"), str(tmp_path / "b")], None)
    both = merge_adapters(micro_model(), split_adapters(new)[0], new)
    assert not torch.allclose(logits(both), logits(base_a), atol=1e-3)
    from llmpipe.models.adapters import AdapterError
    with pytest.raises(AdapterError, match="cannot load the adapter"):
        merge_adapters(micro_model(), [str(tmp_path / "a")], cfg_of("model.adapter_folder=nope"))


# --- freeze and LLaMA Pro ------------------------------------------------------------------------------------

def _block_params(model, i) -> int:
    return sum(p.numel() for p in model.model.layers[i].parameters())


def test_freeze_layers_modules_and_extra_modules():
    from llmpipe.models.freeze import FreezeError, apply_freeze

    m = micro_model()
    assert apply_freeze(m, cfg_of("freeze.trainable_layers=1"))["trainable_params"] == _block_params(m, 1)
    assert all(not p.requires_grad for p in m.model.layers[0].parameters())
    m = micro_model()
    apply_freeze(m, cfg_of("freeze.trainable_layers=-1"))
    assert trainable(m) == _block_params(m, 0)
    m = micro_model()
    apply_freeze(m, cfg_of("freeze.trainable_layers=2", "freeze.trainable_modules=mlp",
                           "freeze.extra_modules=embed_tokens"))
    mlp = sum(p.numel() for i in (0, 1) for p in m.model.layers[i].mlp.parameters())
    assert trainable(m) == mlp + m.model.embed_tokens.weight.numel()
    with pytest.raises(FreezeError, match="choose from: .*q_proj"):
        apply_freeze(micro_model(), cfg_of("freeze.trainable_modules=attention"))
    with pytest.raises(FreezeError, match="choose from: .*embed_tokens"):
        apply_freeze(micro_model(), cfg_of("freeze.extra_modules=wte"))
    for n in (3, -3):   # regression: more blocks than the model has silently trained all of them
        with pytest.raises(FreezeError, match=rf"freeze.trainable_layers={n}, but the model has only 2 decoder blocks"):
            apply_freeze(micro_model(), cfg_of(f"freeze.trainable_layers={n}"))


def test_lora_module_names_that_do_not_exist_are_errors():
    """Regression: PEFT only fails when no lora.target matches; 'q_proj,nothere' silently adapted q_proj alone."""
    from llmpipe.models.adapters import AdapterError, lora_config

    assert lora_config(cfg_of("lora.target='q_proj,v_proj'"), micro_model()).target_modules == {"q_proj", "v_proj"}
    with pytest.raises(AdapterError, match=r"lora.target: nothere not found in LlamaForCausalLM; its linear layers: "):
        lora_config(cfg_of("lora.target='q_proj,nothere'"), micro_model())
    with pytest.raises(AdapterError, match=r"lora.additional_target: wte not found"):
        lora_config(cfg_of("lora.additional_target=wte"), micro_model())
    assert lora_config(cfg_of("lora.additional_target='embed_tokens,score'"), micro_model()).modules_to_save


def test_llama_pro_expands_with_identity_blocks_and_trains_only_them():
    from llmpipe.models import llama_pro
    from llmpipe.models.freeze import apply_freeze

    m = micro_model()
    before = logits(m)
    cfg = cfg_of("train.finetuning_type=freeze", "freeze.use_llama_pro=true", "freeze.trainable_layers=2")
    ids = llama_pro.prepare(m, cfg, log=lambda s: None)
    assert ids == [1, 3] and len(m.model.layers) == 4 and m.config.num_hidden_layers == 4
    assert torch.allclose(logits(m), before, atol=1e-5)                      # the new blocks are the identity
    assert [layer.self_attn.layer_idx for layer in m.model.layers] == [0, 1, 2, 3]
    apply_freeze(m, cfg, ids)
    assert trainable(m) == _block_params(m, 1) + _block_params(m, 3)
    train_steps(m)
    assert not torch.allclose(logits(m), before, atol=1e-4)
    out = m.generate(X[:1, :4], max_new_tokens=3, do_sample=False)            # KV cache over 4 blocks
    assert out.shape == (1, 7)
    assert llama_pro.prepare(m, cfg, log=lambda s: None) == [1, 3] and len(m.model.layers) == 4   # not twice
    with pytest.raises(llama_pro.LlamaProError, match="must divide 2"):
        llama_pro.expand(micro_model(), 3)


def test_lora_on_llama_pro_blocks_only():
    from peft import get_peft_model

    from llmpipe.models import llama_pro
    from llmpipe.models.adapters import AdapterError, lora_config

    cfg = cfg_of("freeze.use_llama_pro=true", "freeze.trainable_layers=1")
    with pytest.raises(AdapterError, match="not expanded"):
        lora_config(cfg, micro_model())
    m = micro_model()
    llama_pro.expand(m, 1)
    peft = get_peft_model(m, lora_config(cfg, m))
    names = {n.split(".layers.")[1].split(".")[0] for n, p in peft.named_parameters() if "lora_" in n}
    assert names == {"2"}


# --- tokens and embeddings -----------------------------------------------------------------------------------

def test_new_tokens_resize_and_initialise(tmp_path):
    from llmpipe.models.special_tokens import TokenSetupError, add_to_tokenizer, resize_embeddings

    desc = tmp_path / "tokens.yaml"
    desc.write_text("'<tool>': w1 w2 w3\n'<obs>': w4\n")
    for init in ("noise_init", "desc_init", "desc_init_w_noise"):
        cfg = cfg_of(f"model.new_special_tokens_config={desc}", "model.resize_vocab=true",
                     f"model.init_special_tokens={init}", "model.add_tokens=newword")
        tok = micro_tokenizer()
        assert add_to_tokenizer(tok, cfg.model) == 3 and tok.convert_tokens_to_ids("<tool>") == 97
        assert tok.decode(tok("w1 <tool> newword")["input_ids"]) == "w1 <tool> newword"
        m = micro_model()
        old = m.model.embed_tokens.weight.detach().clone()
        info = resize_embeddings(m, tok, cfg, log=lambda s: None)
        emb = m.model.embed_tokens.weight.detach()
        assert info == {"old_rows": 96, "new_rows": 128, "tokens": 99} and emb.shape[0] == 128
        assert torch.equal(emb[:96], old) and m.lm_head.weight is m.model.embed_tokens.weight
        tool = emb[97]
        wanted = old[[3, 4, 5]].mean(0)                                       # ids of w1 w2 w3
        if init == "desc_init":
            assert torch.allclose(tool, wanted)
        else:
            assert not torch.allclose(tool, wanted) and (tool - (wanted if init != "noise_init" else old.mean(0))).norm() \
                < 0.1 * old.std() * old.shape[1] ** 0.5
        again = micro_model()
        resize_embeddings(again, tok, cfg, log=lambda s: None)
        assert torch.equal(again.model.embed_tokens.weight, emb)             # seeded: every stage agrees
    with pytest.raises(TokenSetupError, match="resize_vocab=true"):
        resize_embeddings(micro_model(), tok, cfg_of("model.add_tokens=newword"), log=lambda s: None)


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
