"""The vision.freeze_* switches (and train_mm_proj_only, translated into them) decide exactly which parts of a
vision-language model change in training, under LoRA, freeze and full fine-tuning: a micro Qwen2-VL built in
the test takes one optimizer step on an image row, and the parameters that moved are sorted into vision tower,
projector (merger) and language model."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow   # builds and steps micro models (a few seconds in all)


def cfg_of(*overrides: str):
    """The typed configuration, older flags translated as pre-flight does (train_mm_proj_only)."""
    from llmpipe.config.compose import compose
    from llmpipe.config.translate import translate
    from llmpipe.config.typed import typed

    cfg = compose(["model=tiny", "data.dataset=demo_sft", *overrides])
    assert not translate(cfg, [])
    return typed(cfg)


def micro_vl():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    cfg = Qwen2VLConfig(text_config=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                          "mrope_section": [1, 1, 2]}),
                        vision_config=dict(depth=1, embed_dim=16, num_heads=2, mlp_ratio=2, hidden_size=32),
                        image_token_id=99, video_token_id=98, vision_start_token_id=97, vision_end_token_id=96)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Qwen2VLForConditionalGeneration(cfg)


def batch():
    from PIL import Image

    from llmpipe.models.vision_builtin import SPECS, image_processor

    img = Image.new("RGB", (56, 56), (200, 30, 30))
    px = image_processor(SPECS["builtin:tiny_vl"])(images=[img], return_tensors="pt")
    n = int(px["image_grid_thw"].prod()) // 4
    ids = torch.tensor([[1, 2, 97] + [99] * n + [96, 3, 4, 5, 6]])
    return {"input_ids": ids, "labels": ids.clone(), "mm_token_type_ids": (ids == 99).long(),
            "pixel_values": px["pixel_values"], "image_grid_thw": px["image_grid_thw"]}


def changed_parts(*overrides: str) -> set[str]:
    """The parts (vision / projector / language) whose parameters one training step changes."""
    from llmpipe.models import vision_freeze
    from llmpipe.models.trainable import _apply_method
    from llmpipe.models.vision import FAMILIES

    cfg = cfg_of("train.do_train=true", *overrides)
    model = _apply_method(micro_vl(), cfg, None, lambda m: None)
    vision_freeze.apply(model, cfg, lambda m: None)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)
    model(**batch()).loss.backward()
    opt.step()
    fam = FAMILIES["qwen2_vl"]
    return {vision_freeze.group_of(n, fam) for n, p in model.named_parameters() if not torch.equal(p, before[n])}


SWITCH_CASES = [
    ((), {"language"}),                                                       # the defaults: tower, projector frozen
    (("vision.freeze_vision_tower=false",), {"vision", "language"}),
    (("vision.freeze_multi_modal_projector=false",), {"projector", "language"}),
    (("vision.freeze_multi_modal_projector=false", "vision.freeze_language_model=true"), {"projector"}),
    (("vision.train_mm_proj_only=true",), {"projector"}),
    (("vision.freeze_vision_tower=false", "vision.freeze_multi_modal_projector=false"),
     {"vision", "projector", "language"}),
]


# freeze tuning shares the switch logic of full tuning: its single-switch cases cover it
@pytest.mark.parametrize("method, switches, parts", [
    (method, switches, parts) for method in ("full", "lora", "freeze") for switches, parts in SWITCH_CASES
    if method != "freeze" or len(switches) <= 1])
def test_switches_decide_which_parts_train(method, switches, parts):
    assert changed_parts(f"train.finetuning_type={method}", *switches) == parts


def test_lora_all_targets_the_language_model_only_unless_the_tower_is_unfrozen():
    from llmpipe.models.adapters import lora_config

    model = micro_vl()
    lc = lora_config(cfg_of("train.do_train=true", "lora.target=all"), model)
    assert lc.target_modules and all(".language_model." in t for t in lc.target_modules)
    assert not lc.modules_to_save
    lc = lora_config(cfg_of("train.do_train=true", "lora.target=all", "vision.freeze_vision_tower=false",
                            "vision.freeze_multi_modal_projector=false"), model)
    assert any(".visual.blocks." in t for t in lc.target_modules)
    assert not any(".merger." in t for t in lc.target_modules)   # the projector is trained whole instead
    assert lc.modules_to_save == ["model.visual.merger"]


def test_everything_frozen_is_refused():
    from llmpipe.models import vision_freeze
    from llmpipe.models.trainable import _apply_method

    cfg = cfg_of("train.do_train=true", "train.finetuning_type=full", "vision.freeze_language_model=true")
    with pytest.raises(vision_freeze.NothingToTrain, match="train nothing"):
        vision_freeze.apply(_apply_method(micro_vl(), cfg, None, lambda m: None), cfg, lambda m: None)
