"""Fine-tuning methods at the model level, on a micro Llama built in the test (no built-in model needed):
LoRA configuration and its variants (PiSSA residual and conversion), adapters merged/resumed, freeze,
LLaMA Pro expansion, new tokens and resized embeddings (loading options and QLoRA: test_methods_loading.py).
Every test checks the effect that defines the option."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow   # builds and trains micro models (a few seconds in all)
from methods_support import (  # noqa: F401  (model_dir is a fixture)
    MICRO, WORDS, X, cfg_of, logits, micro_model, micro_tokenizer, model_dir, train_steps, trainable,
)


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
