"""Inference loads quantized models (issue 17): with quantization.bit, llmpipe.chat, serve, predict and evaluate
(all through llmpipe.infer.hf_backend.load_model) quantize the base while loading, as training did, place it with
quantization.device_map, and keep the last LoRA adapter unmerged on the quantized weights."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from llmpipe.models.builtin import ensure_builtin

    return str(ensure_builtin("builtin:tiny", tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    """A LoRA adapter with non-zero B, so it changes the logits."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(out)
    return str(out)


def _load(hydra_compose, base, adapters, *overrides):
    from llmpipe.config.typed import typed
    from llmpipe.infer.hf_backend import load_model
    from llmpipe.infer.model_ref import ModelRef

    obj = typed(hydra_compose(*overrides))
    return load_model(ModelRef(base, base, adapters=tuple(adapters)), obj, log=lambda _m: None)


def _layer(model):
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(core.model.layers[0].self_attn.q_proj.base_layer
                if hasattr(core.model.layers[0].self_attn.q_proj, "base_layer")
                else core.model.layers[0].self_attn.q_proj).__name__


def test_quantized_base_with_an_unmerged_adapter(hydra_compose, base, adapter):
    model = _load(hydra_compose, base, [adapter], "quantization=bnb4")
    assert type(model).__name__.startswith("Peft") and _layer(model) == "Linear4bit"
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        with_adapter = model(input_ids=ids).logits
        with model.disable_adapter():
            without = model(input_ids=ids).logits
    assert not torch.allclose(with_adapter, without)   # the adapter acts on the quantized weights
    out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == 7


def test_unquantized_load_is_unchanged(hydra_compose, base, adapter):
    model = _load(hydra_compose, base, [adapter])
    assert _layer(model) == "Linear" and not type(model).__name__.startswith("Peft")   # merged, as before


def test_automatic_device_map_places_the_quantized_model(hydra_compose, base):
    model = _load(hydra_compose, base, [], "quantization=bnb8", "quantization.device_map=auto")
    assert _layer(model) == "Linear8bitLt"
    assert set(getattr(model, "hf_device_map", {}).values()) <= {"cpu", 0, "cuda:0"}
