"""Pre-flight through the real CLI: a bad config exits 2 before anything is written, names the key and
the value on stderr, prints no traceback (unless HYDRA_FULL_ERROR=1), and is fast."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

BASE = ["model=tiny", "data.dataset=demo_sft"]
LIMIT_S = 10.0   # generous for a shared 2-core machine; a check takes well under a second of CPU

# overrides -> (key, value) that stderr must name
CASES = {
    "fsdp-on-cpu": (["launch=fsdp"], "launch.kind", "'fsdp'"),
    "dataset-kind-vs-stage": (["train.stage=dpo"], "data.dataset", "'demo_sft'"),
    "ppo-without-reward-model": (["train.stage=ppo"], "ppo.reward_model", "None"),
    "gptq-on-the-fly": (["quantization.method=gptq", "quantization.bit=4"], "quantization.method", "'gptq'"),
    "streaming-without-max-steps": (["data.streaming=true"], "train.max_steps", "-1"),
    "flash-attn-on-cpu": (["model.flash_attn=fa2"], "model.flash_attn", "'fa2'"),
    "unknown-dataset": (["data.dataset=no_such_dataset"], "data.dataset", "'no_such_dataset'"),
    "hub-model-offline": (["model.name_or_path=llmpipe-test/not-cached"], "model.name_or_path", "'llmpipe-test/not-cached'"),
    "simpo-with-ref-model": (["pref=simpo", "data.dataset=demo_pref", "pref.ref_model=builtin:tiny"], "pref.ref_model",
                             "'builtin:tiny'"),
    "bf16-and-fp16": (["train.bf16=true", "train.fp16=true"], "train.fp16", "True"),
}


def _run(args, cwd, env):
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "llmpipe", *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=120)
    return out, time.monotonic() - t0


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_exits_2_and_names_key_and_value(name, tmp_path, cli_env):
    overrides, key, value = CASES[name]
    out, took = _run(BASE + overrides, tmp_path, cli_env)
    assert out.returncode == 2, f"rc={out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip().startswith("x ")]
    assert any(key in ln and value in ln for ln in lines), f"{key} = {value} not named:\n{out.stderr}"
    assert "fix:" in out.stderr and "allowed:" in out.stderr, out.stderr
    assert took < LIMIT_S, f"pre-flight took {took:.1f}s"
    assert list(tmp_path.iterdir()) == [], f"something was written: {list(tmp_path.iterdir())}"


def test_several_problems_in_one_report(tmp_path, cli_env):
    out, _ = _run(BASE + ["train.stage=ppo", "launch=fsdp", "train.bf16=true", "train.fp16=true"], tmp_path, cli_env)
    assert out.returncode == 2, out.stderr
    assert "the configuration has" in out.stderr and "problems" in out.stderr, out.stderr
    for key in ("ppo.reward_model", "launch.kind", "train.fp16"):
        assert key in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == []


def test_full_error_shows_traceback(tmp_path, cli_env):
    env = dict(cli_env, HYDRA_FULL_ERROR="1")
    out, _ = _run(BASE + ["launch=fsdp"], tmp_path, env)
    assert out.returncode != 0
    assert "Traceback" in out.stderr, out.stderr
    assert "launch.kind" in out.stderr, out.stderr


def test_full_error_writes_nothing(tmp_path, cli_env):
    env = dict(cli_env, HYDRA_FULL_ERROR="1")
    out, _ = _run(BASE + ["launch=fsdp"], tmp_path, env)
    assert out.returncode == 2
    assert list(tmp_path.iterdir()) == []
