"""Recipe repositories cannot configure Hydra's code-running parts; checked before Hydra starts."""
import os
import subprocess
import sys

import pytest

from llmpipe.safety import _hydra_settings

BAD = {
    "callbacks": "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: builtins.print\n",
    "logging": "# @package _global_\nhydra:\n  job_logging:\n    root: {level: INFO}\n",
    "target": "# @package _global_\nhydra:\n  sweeper:\n    _target_: os.system\n",
    "package": "# @package hydra\ncallbacks: {}\n",
    "default": "# @package _global_\ndefaults:\n  - override /hydra/job_logging: none\n",
}
GOOD = {
    "plain": "# @package _global_\nmodel:\n  name_or_path: builtin:tiny\n",
    "sweeper": ("# @package _global_\ndefaults:\n  - override /hydra/sweeper: optuna\n"
                "hydra:\n  sweeper:\n    direction: minimize\n    n_trials: 4\n    params:\n      lora.rank: choice(4, 8)\n"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_recipe_files_are_flagged(name):
    assert _hydra_settings(BAD[name])


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_recipe_files_pass(name):
    assert _hydra_settings(GOOD[name]) is None


def test_cli_refuses_before_hydra_runs_anything(tmp_path):
    repo = tmp_path / "repo" / "recipe"
    repo.mkdir(parents=True)
    marker = tmp_path / "pwned"
    (repo / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: pathlib.Path.touch\n"
        f"      self: {marker}\n")
    env = {**os.environ, "LLMPIPE_RECIPES": str(tmp_path / "repo")}
    proc = subprocess.run([sys.executable, "-m", "llmpipe", "+recipe=evil", "model=tiny", "--cfg", "job"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "evil.yaml" in proc.stderr and "hydra.callbacks" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "outputs").exists()


def _cli(args, cwd, env=None):
    env = {**os.environ, **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("LLMPIPE_TRUST_REMOTE_CODE", None)
    return subprocess.run([sys.executable, "-m", "llmpipe", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_config_dir_recipes_are_checked_like_any_other(tmp_path):
    """Item 13: a recipe loaded with --config-dir ran a command through hydra.callbacks during a dry run; a YAML
    error in one gave a 60-line traceback. Both are now exit 2 before Hydra starts, nothing run or written."""
    shared = tmp_path / "shared" / "recipe"
    shared.mkdir(parents=True)
    marker = tmp_path / "pwned"
    (shared / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: pathlib.Path.touch\n"
        f"      self: {marker}\n")
    out = _cli([f"--config-dir={tmp_path / 'shared'}", "+recipe=evil", "model=tiny", "run.dry_run=true"], tmp_path)
    assert out.returncode == 2 and "evil.yaml" in out.stderr and "hydra.callbacks" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not marker.exists() and not (tmp_path / "outputs").exists()
    (shared / "evil.yaml").write_text("# @package _global_\nmodel:\n\tname_or_path: x\n")
    out = _cli(["-cd", str(tmp_path / "shared"), "+recipe=evil", "run.dry_run=true"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "evil.yaml" in out.stderr and "(line 3, column 1)" in out.stderr and "tabs" in out.stderr


def test_trust_remote_code_only_from_the_user(tmp_path):
    """Item 15: a shared recipe turning on trust_remote_code is refused at pre-flight (however it arrives); the
    user's own override allows it, with one line saying remote code will run."""
    shared = tmp_path / "shared" / "recipe"
    shared.mkdir(parents=True)
    (shared / "remote.yaml").write_text("# @package _global_\ndefaults:\n  - /recipe/demo\n  - _self_\n"
                                        "model:\n  trust_remote_code: true\n")
    out = _cli(["-cd", str(tmp_path / "shared"), "+recipe=remote", "run.dry_run=true"], tmp_path)
    assert out.returncode == 2 and "model.trust_remote_code" in out.stderr, out.stderr
    assert "LLMPIPE_TRUST_REMOTE_CODE=1" in out.stderr and not (tmp_path / "outputs").exists()
    out = _cli(["-cd", str(tmp_path / "shared"), "+recipe=remote", "run.dry_run=true", "model.trust_remote_code=true"],
               tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("model's own Python code") == 1 and "dry run" in out.stdout
