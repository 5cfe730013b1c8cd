"""Pre-flight knows the vision-language built-ins (builtin:tiny_vl and the vision-language zoo) without building them:
llmpipe.models.facts gives their config (family, depth, width, positions), so the rules that read it act on them
(a freeze.trainable_layers beyond the depth and a LoRA target the model lacks are refused before anything runs)
instead of being skipped. tests/integration/test_vlm_families.py checks the configs against the built folders."""
from __future__ import annotations

from llmpipe.models import vision_builtin, vlm_zoo

NAMES = [*vision_builtin.SPECS, *vlm_zoo.names()]


def test_every_vlm_builtin_has_facts():
    from llmpipe.models.facts import facts_of

    for name in NAMES:
        facts = facts_of(name)
        assert facts is not None, name
        kind = vlm_zoo.model_type(name) if vlm_zoo.is_vlm_zoo(name) else "qwen2_vl"
        assert facts.config["model_type"] == kind and facts.config.get("vision_config"), name
        assert (facts.depth, facts.hidden_size) == ((2, 128) if name == "builtin:tiny_vl" else (2, 64)), name
        assert facts.config["architectures"][0].endswith("ForConditionalGeneration"), name


def test_rules_reading_facts_act_on_vlm_builtins(name="builtin:tiny_vl"):
    from llmpipe.config.compose import compose
    from llmpipe.pipeline.preflight import validate

    def problems(*overrides):
        _, found = validate(compose(["model=tiny", f"model.name_or_path={name}", "train.do_train=true", *overrides]))
        return {p.rule: p.render() for p in found}

    found = problems("train.finetuning_type=freeze", "freeze.trainable_layers=3")
    assert "only 2 decoder blocks" in found.get("model-freeze-layers", ""), found
    found = problems("lora.target=no_such_proj")
    assert "no_such_proj" in found.get("model-lora-target", ""), found
    assert "model-lora-target" not in problems("lora.target=q_proj")
