"""The Hydra app through its real command line: recipes, --cfg, dry-run sweeps, secrets, bad input."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

RECIPES = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "recipes" / "recipe").glob("*.yaml"))


def run(args, cwd, env=None, timeout=120):
    env = {**os.environ, "LLMPIPE_CACHE": str(Path(cwd) / "cache"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "llmpipe", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cfg_job_shows_recipe_values(tmp_path):
    out = run(["+recipe=dpo_qwen", "--cfg", "job"], tmp_path)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["lora"]["rank"] == 16 and cfg["pref"]["beta"] == 0.1
    assert cfg["model"]["name_or_path"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert not (tmp_path / "outputs").exists()


def test_help_and_info(tmp_path):
    for args in (["--help"], ["--info", "defaults-tree"], ["--info", "searchpath"], ["+recipe=demo", "--cfg", "job", "--resolve"]):
        out = run(args, tmp_path)
        assert out.returncode == 0, (args, out.stderr)
    assert "recipes" in run(["--info", "searchpath"], tmp_path).stdout


def test_shell_completion(tmp_path):
    out = run(["--shell-completion", "install=bash"], tmp_path)
    assert out.returncode == 0 and "COMP_LINE" in out.stdout
    env = {**os.environ, "COMP_LINE": "llmpipe lora.ra", "LLMPIPE_CACHE": str(tmp_path)}
    llmpipe = Path(sys.executable).with_name("llmpipe")
    q = subprocess.run([str(llmpipe), "--shell-completion", "query=bash"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert q.returncode == 0 and "lora.rank=" in q.stdout.split()


def test_sweep_dry_run_makes_four_distinct_jobs(tmp_path):
    out = run(["-m", "+recipe=dpo_qwen", "model=tiny", "lora.rank=8,16", "pref.beta=0.1,0.5", "run.dry_run=true"], tmp_path)
    assert out.returncode == 0, out.stderr
    configs = sorted((tmp_path / "multirun").rglob(".hydra/config.yaml"))
    assert len(configs) == 4
    seen = {(c["lora"]["rank"], c["pref"]["beta"]) for c in (yaml.safe_load(p.read_text()) for p in configs)}
    assert seen == {(8, 0.1), (8, 0.5), (16, 0.1), (16, 0.5)}
    assert out.stdout.count("dry run") == 4


def test_bad_sweep_value_is_caught_before_any_job(tmp_path):
    out = run(["-m", "+recipe=demo", "lora.rank=8,0"], tmp_path)
    assert out.returncode == 2
    assert "lora.rank" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "multirun").exists()


def test_a_recipes_own_sweep_params_are_checked_before_any_job(tmp_path):
    """``hydra.sweeper.params`` in a recipe (allowed: docs/recipes.md) sweeps like the command line: every job is
    refused pre-flight, and a command-line value of the same key replaces the recipe's, as Hydra's basic sweeper
    combines them."""
    repo = tmp_path / "team" / "recipe"
    repo.mkdir(parents=True)
    (repo / "rank_sweep.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /recipe/demo\nhydra:\n  sweeper:\n    params:\n      lora.rank: 8,-1\n")
    env = {"LLMPIPE_RECIPES": str(tmp_path / "team")}
    out = run(["-m", "+recipe=rank_sweep"], tmp_path, env=env)
    assert out.returncode == 2 and "lora.rank = -1" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "cache").exists()
    (repo / "typo_sweep.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /recipe/demo\nhydra:\n  sweeper:\n    params:\n      lora.rank: 8,,16\n")
    out = run(["-m", "+recipe=typo_sweep"], tmp_path, env=env)
    assert out.returncode == 2 and "hydra.sweeper.params" in out.stderr and "lora.rank=8,,16" in out.stderr
    assert "Traceback" not in out.stderr and "warn" not in out.stderr.lower(), out.stderr
    out = run(["-m", "+recipe=rank_sweep", "lora.rank=4,16", "run.dry_run=true"], tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    ranks = sorted(yaml.safe_load(p.read_text())["lora"]["rank"]
                   for p in (tmp_path / "multirun").rglob(".hydra/config.yaml"))
    assert ranks == [4, 16]


@pytest.mark.parametrize("args,key", [
    (["+recipe=demo", "lora.rnk=4"], "lora.rank"),                # unknown key -> suggestion
    (["+recipe=demo", "lora.rank=abc"], "lora.rank"),             # wrong type
    (["+recipe=demo", "pref.loss=sigmod"], "sigmoid"),            # bad enum -> closest value
    (["+recipe=nope"], "recipe"),                                  # unknown recipe
    (["+recipe=demo", "+foo=1"], "foo"),                           # stray key
    (["+recipe=demo", "train.learning_rate=-1"], "train.learning_rate"),
])
def test_bad_input_exit_2_without_traceback(tmp_path, args, key):
    out = run(args, tmp_path)
    assert out.returncode == 2, out.stderr
    assert key in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists()


def test_malformed_recipe_file(tmp_path):
    repo = tmp_path / "team" / "recipe"
    repo.mkdir(parents=True)
    (repo / "broken.yaml").write_text("# @package _global_\nlora: [rank: 4\n")
    out = run(["+recipe=broken", "model=tiny"], tmp_path, env={"LLMPIPE_RECIPES": str(tmp_path / "team")})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "broken.yaml" in out.stderr and "not valid YAML (line" in out.stderr


SECRET = "hf_llmpipeTESTsecret0123456789"


def test_secret_never_written(tmp_path):
    out = run(["+recipe=demo", f"model.hf_hub_token={SECRET}", "run.dry_run=true"], tmp_path,
              env={"HF_TOKEN": "hf_fromTheEnvironment987654321"})
    assert out.returncode == 0, out.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in files)
    for p in files:
        text = p.read_text(errors="replace")
        assert SECRET not in text, p
        assert "hf_fromTheEnvironment987654321" not in text, p
    assert SECRET not in out.stdout + out.stderr


def test_unwritable_cache_root(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = run(["+recipe=demo", f"run.cache_root={blocker}/cache", "run.dry_run=true"], tmp_path)
    assert out.returncode == 2 and "run.cache_root" in out.stderr and "Traceback" not in out.stderr
