"""The multimodal measure's pure parts: the matched settings in both tools' spellings, and its arithmetic
(no training, no LLaMA-Factory install)."""
from __future__ import annotations

import yaml

from bench import vlm, vlmconfigs
from llmpipe.config.meta import iter_params
from llmpipe.config.root import LlmpipeConfig


def test_both_tools_get_the_same_values_from_one_table(tmp_path):
    over = dict(o.split("=", 1) for o in vlmconfigs.llmpipe_overrides(tmp_path / "m", tmp_path / "d"))
    lf = yaml.safe_load(vlmconfigs.write_lf_yaml(tmp_path / "m", tmp_path / "d", tmp_path / "o",
                                                 tmp_path / "lf.yaml").read_text())
    assert over["model.name_or_path"] == lf["model_name_or_path"] == str(tmp_path / "m")
    assert over["data.dataset_dir"] == lf["dataset_dir"] == str(tmp_path / "d")
    for key, (lf_key, value) in vlmconfigs.SETTINGS.items():
        assert lf[lf_key] == value, lf_key
        # the override reads back as the same value (strings as Hydra's grammar reads them: "no" stays a string)
        assert (over[key] if isinstance(value, str) else yaml.safe_load(over[key])) == value, key
    assert lf["template"] == "qwen2_vl" and lf["packing"] is False
    assert lf["per_device_train_batch_size"] == vlmconfigs.BATCH and lf["max_steps"] == vlmconfigs.STEPS


def test_every_llmpipe_key_is_a_parameter_documented_under_the_lf_name():
    params = {path: meta for path, _, meta, _ in iter_params(LlmpipeConfig)}
    for key, (lf_key, _) in vlmconfigs.SETTINGS.items():
        assert key in params, key
        assert lf_key in params[key].seed, (key, lf_key, params[key].seed)


def test_what_lf_turns_on_by_itself_is_explicit_for_llmpipe():
    s = {k: v for k, (_, v) in vlmconfigs.SETTINGS.items()}
    assert s["model.disable_gradient_checkpointing"] is False and s["model.use_reentrant_gc"] is True
    assert s["lora.alpha"] == 2 * s["lora.rank"] and s["lora.dropout"] == 0.0
    assert s["vision.freeze_vision_tower"] is True and s["vision.freeze_multi_modal_projector"] is True


def test_loss_difference_and_per_round_ratio():
    a = {"1": 1.0, "2": 0.5, "3": 0.25}
    b = {1: 1.0, 2: 0.5000001, 3: 0.2}
    d = vlm.loss_diff(a, b)
    assert d["steps"] == 3 and d["worst_step"] == 3
    assert abs(d["max_abs"] - 0.05) < 1e-12 and abs(d["max_rel"] - 0.25) < 1e-12
    assert vlm.loss_diff({}, b)["max_abs"] is None
    stats = {"mean_tokens_per_row": 43.0}
    rec = {"rc": 0, "steps": 30, "wall_s": 20.0, "cpu_s": 30.0, "peak_rss_mib": 700.0, "load_before": 1.0,
           "load_after": 1.2}
    records = [dict(rec, tool="llmpipe", rep=0, train_runtime=10.0, loss=a),
               dict(rec, tool="lf", rep=0, train_runtime=15.0, loss=b, wall_s=30.0),
               dict(rec, tool="lf", rep=1, train_runtime=12.0, loss=b),
               dict(rec, tool="llmpipe", rep=1, train_runtime=12.0, loss=a)]
    assert vlm.tokens_per_s(records[0], stats) == 43.0 * vlmconfigs.BATCH * 30 / 10.0
    s = vlm.summarize(records, stats)
    assert [round(p["ratio"], 6) for p in s["per_round"]] == [1.5, 1.0]
    assert s["per_round"][0]["wall_ratio"] == 1.5
    assert s["ratio_per_round_median"] == 1.25 and s["met"] is True
    assert s["ratio_best"] == 1.2   # fastest llmpipe round (10 s) against fastest LF round (12 s)
    assert abs(s["loss_max_rel"] - 0.25) < 1e-12
    failed = vlm.summarize([dict(records[0], rc=1), records[1]], stats)
    assert failed["per_round"] == [] and failed["met"] is None
