"""The model groups of popular hub models (conf/model/*.yaml): each names a hub id and a chat template llmpipe
knows, and `+recipe=<any> model=<group>` is a whole configuration: it composes, passes pre-flight and plans, with
no download (the hub id is only looked at when the load stage runs)."""
from __future__ import annotations

import pytest

from llmpipe.resources import folder

HUB_GROUPS = {   # group -> (hub id, template: LLaMA-Factory's name for it)
    "qwen3_0_6b": ("Qwen/Qwen3-0.6B", "qwen3"),
    "qwen3_8b": ("Qwen/Qwen3-8B", "qwen3"),
    "qwen3_4b_instruct_2507": ("Qwen/Qwen3-4B-Instruct-2507", "qwen3_nothink"),
    "qwen3_30b_a3b": ("Qwen/Qwen3-30B-A3B", "qwen3"),
    "qwen2_5_0_5b_instruct": ("Qwen/Qwen2.5-0.5B-Instruct", "qwen"),
    "llama3_8b_instruct": ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
    "llama3_1_8b_instruct": ("meta-llama/Llama-3.1-8B-Instruct", "llama3"),
    "gemma3_1b_it": ("google/gemma-3-1b-it", "gemma3"),
    "gemma3_4b_it": ("google/gemma-3-4b-it", "gemma3"),
    "mistral_7b_instruct": ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
    "deepseek_r1_distill_qwen_7b": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseekr1"),
    "deepseek_r1_distill_llama_8b": ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "deepseekr1"),
    "phi4_mini_instruct": ("microsoft/Phi-4-mini-instruct", "phi4_mini"),
    "glm4_9b_chat": ("THUDM/glm-4-9b-chat-hf", "glm4"),
    "gpt_oss_20b": ("openai/gpt-oss-20b", "gpt_oss"),
}
LOCAL_GROUPS = {"hf", "tiny", "tiny_vl", "tiny_qwen2_audio", "tiny_qwen2_5_omni"}


def test_every_hub_group_is_listed_here():
    groups = {p.stem for p in (folder("conf") / "model").glob("*.yaml")}
    assert groups - LOCAL_GROUPS == set(HUB_GROUPS)


@pytest.mark.parametrize("group", sorted(HUB_GROUPS))
def test_recipe_plus_model_group_is_a_whole_config(group, monkeypatch):
    from llmpipe.config.compose import compose
    from llmpipe.data.templates import TEMPLATES
    from llmpipe.pipeline.dag import build_plan
    from llmpipe.pipeline.preflight import validate

    for var in ("HF_HUB_OFFLINE", "LLMPIPE_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)   # a hub id that is not cached is fine until the load stage
    hub_id, template = HUB_GROUPS[group]
    cfg = compose(["+recipe=sft_qwen", f"model={group}"])
    assert (cfg.model.name_or_path, cfg.data.template) == (hub_id, template)
    assert template in TEMPLATES
    validated, problems = validate(cfg)
    assert not problems, [p.render() for p in problems]
    assert [n.id for n in build_plan(validated.cfg).nodes][:3] == ["load", "adapt", "train"]
