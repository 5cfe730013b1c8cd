"""List flags: comma-separated strings in the DictConfig (YAML, lock file, fingerprints), lists in the typed
object that llmpipe.config.typed.typed() makes, once."""
from __future__ import annotations

import dataclasses

from omegaconf import OmegaConf

from llmpipe.config.flags import flag_table
from llmpipe.config.typed import list_flags, split_list, typed


def test_split_list():
    assert split_list("a,b") == ["a", "b"]
    assert split_list(" a , ,b ,") == ["a", "b"]
    assert split_list(None) == [] and split_list("") == [] and split_list(" , ") == []
    assert split_list(["a", " b", ""]) == ["a", "b"]   # idempotent on a list


def test_the_list_flags_are_the_comma_separated_parameters():
    assert set(list_flags()) == {
        "data.dataset", "data.eval_dataset", "data.interleave_probs", "model.adapter_name_or_path",
        "model.add_tokens", "model.add_special_tokens", "model.new_special_tokens", "lora.target",
        "lora.additional_target", "freeze.trainable_modules", "freeze.extra_modules", "galore.target",
        "pref.ref_model_adapters", "ppo.reward_model_adapters", "train.report_to", "train.debug", "apollo.target",
        "train.profile_modules",
        "oft.target",
    }
    for path in list_flags():   # the schema keeps a string; the field's hint names the convention
        assert flag_table().by_path(path).type in ("str", "str | None"), path


def test_list_flag_hints_name_the_convention():
    from llmpipe.config.meta import iter_params
    from llmpipe.config.root import LlmpipeConfig

    for path, f, meta, _ in iter_params(LlmpipeConfig):
        assert (f.type in ("ListFlag", "OptionalListFlag")) == bool(meta.list_sep), (path, f.type)


def test_typed_splits_list_flags_and_leaves_the_dictconfig_alone(hydra_compose):
    cfg = hydra_compose("data.dataset='demo_sft, demo_sft_zh'", "lora.target='q_proj,v_proj'",
                        "data.interleave_probs='0.5,0.5'")
    obj = typed(cfg)
    assert obj.data.dataset == ["demo_sft", "demo_sft_zh"] and obj.lora.target == ["q_proj", "v_proj"]
    assert obj.data.interleave_probs == ["0.5", "0.5"]
    assert obj.data.eval_dataset == [] and obj.model.adapter_name_or_path == []   # unset -> []
    assert obj.freeze.trainable_modules == ["all"] and obj.train.report_to == ["none"]
    assert cfg.data.dataset == "demo_sft, demo_sft_zh" and cfg.lora.target == "q_proj,v_proj"   # as written
    assert cfg.data.eval_dataset is None
    assert dataclasses.is_dataclass(obj)


def test_typed_without_the_schema_splits_the_same_keys():
    obj = typed(OmegaConf.create({"data": {"dataset": "a,b", "template": "x,y"}, "run": {"name": "n"}}))
    assert obj == {"data": {"dataset": ["a", "b"], "template": "x,y"}, "run": {"name": "n"}}
