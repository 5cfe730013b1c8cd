"""The vision.freeze_* switches on an audio-language model (Qwen2-Audio): the audio tower is the "vision tower"
(as in LLaMA-Factory), the projector and the language model are as for a VLM. A micro Qwen2-Audio built in the
test takes one optimizer step on an audio row; the parameters that moved are sorted into tower / projector /
language model, under LoRA and full fine-tuning; lora.target=all adapts the language model only."""
from __future__ import annotations

import pytest
from test_vision_freeze import cfg_of

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow   # builds and steps micro models (a few seconds in all)


def micro_audio():
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    audio = {"model_type": "qwen2_audio_encoder", "num_mel_bins": 16, "encoder_layers": 1,
             "encoder_attention_heads": 2, "encoder_ffn_dim": 32, "d_model": 16, "max_source_positions": 25}
    text = {"model_type": "llama", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2}
    cfg = Qwen2AudioConfig(audio_config=audio, text_config=text, audio_token_index=99)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Qwen2AudioForConditionalGeneration(cfg)


def changed_parts(*overrides: str) -> set[str]:
    from llmpipe.models import vision_freeze
    from llmpipe.models.trainable import _apply_method
    from llmpipe.models.vision import FAMILIES

    cfg = cfg_of("train.do_train=true", *overrides)
    model = _apply_method(micro_audio(), cfg, None, lambda m: None)
    vision_freeze.apply(model, cfg, lambda m: None)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    frames = torch.ones(1, 50, dtype=torch.long)   # 50 mel frames -> 12 audio tokens
    ids = torch.tensor([[1, 2] + [99] * 12 + [3, 4, 5]])
    model(input_ids=ids, labels=ids.clone(), input_features=torch.randn(1, 16, 50),
          feature_attention_mask=frames).loss.backward()
    opt.step()
    fam = FAMILIES["qwen2_audio"]
    return {vision_freeze.group_of(n, fam) for n, p in model.named_parameters() if not torch.equal(p, before[n])}


@pytest.mark.parametrize("method, switches, parts", [
    ("lora", (), {"language"}),                                            # the defaults: tower, projector frozen
    ("lora", ("vision.freeze_vision_tower=false",), {"vision", "language"}),   # the audio tower gets adapters
    ("full", ("vision.freeze_multi_modal_projector=false", "vision.freeze_language_model=true"), {"projector"}),
])
def test_switches_decide_which_parts_of_an_audio_model_train(method, switches, parts):
    assert changed_parts(f"train.finetuning_type={method}", *switches) == parts


def test_lora_all_targets_the_language_model_only():
    from llmpipe.models.adapters import lora_config

    lc = lora_config(cfg_of("train.do_train=true", "lora.target=all"), micro_audio())
    assert lc.target_modules and all(".language_model." in t for t in lc.target_modules)
