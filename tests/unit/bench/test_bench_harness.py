"""The benchmark harness's pure parts: asset rows, LLaMA-Factory configs, the measuring runner, the profile
summary (no training, no LLaMA-Factory install)."""
from __future__ import annotations

import sys

import yaml

from bench import assets, lfconfigs, measure, tools
from bench import hotspots as profile


def count(text: str) -> int:   # a stand-in tokenizer: one token per word or special marker
    return len(text.replace("<|", " <|").split())


def test_rows_are_seeded_and_within_the_length_range():
    sft, pref = assets.build_rows(count, n_sft=60, n_pref=30)
    again = assets.build_rows(count, n_sft=60, n_pref=30)
    assert (sft, pref) == again
    assert len(sft) == 60 and len(pref) == 30
    lengths = [count(assets.render(r["prompt"], r["answer"])) for r in sft]
    assert min(lengths) >= 1 and max(lengths) <= assets.MAX_LEN
    assert {r["prompt"].split(":")[0] for r in sft} == {
        "Give the running total of these numbers", "Facts", "Reverse the order of these words"}
    assert all(r["chosen"] != r["rejected"] for r in pref)


def test_running_sum_answers_are_right_and_the_rejected_one_wrong():
    sft, pref = assets.build_rows(count, n_sft=3, n_pref=3)
    nums = [int(x) for x in sft[0]["prompt"].split(": ")[1].split()]
    totals = [sum(nums[:i + 1]) for i in range(len(nums))]
    assert sft[0]["answer"] == ", ".join(map(str, totals))
    assert pref[0]["chosen"] != pref[0]["rejected"]


def test_dataset_files_register_the_same_rows_for_both_tools():
    sft, pref = assets.build_rows(count, n_sft=6, n_pref=4)
    files = assets.dataset_files(sft, pref)
    info = files["dataset_info.json"]
    assert info["bench_pref"]["ranking"] is True and info["bench_pref_chat"]["ranking"] is True
    assert files["sft_alpaca.json"][2]["instruction"] == files["sft_chat.json"][2]["messages"][0]["content"]
    assert files["pref_chat.json"][1]["rejected"] == {"role": "assistant", "content": pref[1]["rejected"]}
    stats = assets.token_stats(sft, pref, count)
    assert stats["sft"]["rows"] == 6 and stats["sft"]["tokens"] == sum(stats["sft"]["lengths"])


def test_lf_configs_are_valid_yaml_with_the_matched_settings(tmp_path):
    y = lfconfigs.write("sft_lora", tmp_path / "assets", tmp_path / "out", tmp_path / "a.yaml")
    cfg = yaml.safe_load(y.read_text())
    assert cfg["save_strategy"] == "no" and cfg["packing"] is False and cfg["learning_rate"] == 1e-4
    assert cfg["model_name_or_path"] == str(tmp_path / "assets" / "model")
    dpo = lfconfigs.training("dpo_lora", tmp_path, tmp_path)
    assert dpo["stage"] == "dpo" and dpo["dataset"] == "bench_pref" and dpo["max_steps"] == 20
    assert lfconfigs.training("sft_lora_packing", tmp_path, tmp_path)["packing"] is True


def test_every_invalid_config_exists_for_both_tools():
    assert set(lfconfigs.INVALID) == set(tools.INVALID)
    for name in lfconfigs.INVALID:
        yaml.safe_load(lfconfigs.to_yaml(lfconfigs.training(name, "/a", "/o")))


def test_llmpipe_matched_overrides_mirror_lf_settings():
    over = dict(o.split("=", 1) for o in tools.MATCHED)
    lf = lfconfigs.COMMON
    assert over["lora.rank"] == str(lf["lora_rank"]) and over["train.max_steps"] == str(lf["max_steps"])
    assert float(over["train.learning_rate"]) == lf["learning_rate"]
    assert over["train.optim"] == "adamw_torch_fused" and over["model.disable_gradient_checkpointing"] == "false"
    own = dict(o.split("=", 1) for o in tools.OWN)
    assert own["data.neat_packing"] == "true" and "train.optim" not in own


def test_measure_run_reports_exit_code_memory_and_tracebacks(tmp_path):
    code = "import sys; b = bytearray(80 * 2**20); b[::4096] = b'x' * len(b[::4096]); raise SystemExit(3)"
    r = measure.run([sys.executable, "-c", code], tmp_path / "log.txt")
    assert r["rc"] == 3 and r["peak_rss_mib"] >= 80 and r["wall_s"] > 0 and not r["traceback"]
    r = measure.run([sys.executable, "-c", "1/0"], tmp_path / "log2.txt")
    assert r["rc"] == 1 and r["traceback"]


def test_profile_groups_stacks_into_phases():
    raw = "\n".join([
        "main (a.py:1);_find_and_load (<frozen>:1) 10",
        "main (a.py:1);Trainer.train (t.py:1);Tensor.backward (t.py:2);CheckpointFunction.backward (c.py:1) 30",
        "main (a.py:1);Trainer.train (t.py:1);Tensor.backward (t.py:2) 40",
        "main (a.py:1);Trainer.train (t.py:1);training_step (t.py:3);compute_loss (t.py:4) 20",
    ])
    got = profile.summarize_raw(raw)
    assert got["imports"] == 0.1 and got["backward"] == 0.4 and got["forward (loss)"] == 0.2
    assert got["backward: recompute of checkpointed layers"] == 0.3
