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
