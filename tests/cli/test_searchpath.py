"""Team recipe repositories on Hydra's search path: LLMPIPE_RECIPES, hydra.searchpath, a pip package with
its own search-path plugin; duplicate names and missing folders are pre-flight errors (exit 2)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

# A config that passes the pre-flight on its own (a dry run, should a check ever let it through).
TASK = ["data.dataset=demo_sft", "train.do_train=true", "run.dry_run=true"]
VALID = ["model=tiny", *TASK]


def run(*args: str, cwd: Path, env: dict | None = None, module: str = "llmpipe") -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("LLMPIPE_RECIPES", "HYDRA_FULL_ERROR")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=120)


def tools(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return run(*args, cwd=cwd, env=env, module="llmpipe.tools.cli")


def team_repo(root: Path, recipe: str = "acme_x", rank: int = 32) -> Path:
    (root / "recipe").mkdir(parents=True, exist_ok=True)
    (root / "model").mkdir(exist_ok=True)
    (root / "recipe" / f"{recipe}.yaml").write_text(textwrap.dedent(f"""\
        # @package _global_
        # Run: python -m llmpipe +recipe={recipe}
        # A team recipe: the team's own model option plus a LoRA rank.
        defaults:
          - override /model: acme_tiny
        lora:
          rank: {rank}
        """))
    (root / "model" / "acme_tiny.yaml").write_text(
        "# model: acme_tiny, the team's pet model\nname_or_path: builtin:tiny\n")
    return root


def job(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture()
def team(tmp_path):
    return team_repo(tmp_path / "acme-recipes")


def test_recipe_via_env_var(tmp_path, team):
    cfg = job(run("+recipe=acme_x", "--cfg", "job", cwd=tmp_path, env={"LLMPIPE_RECIPES": str(team)}))
    assert cfg["lora"]["rank"] == 32 and cfg["model"]["name_or_path"] == "builtin:tiny"


def test_env_var_relative_folder_and_several_entries(tmp_path, team):
    other = team_repo(tmp_path / "other", recipe="other_y", rank=4)
    env = {"LLMPIPE_RECIPES": os.pathsep.join(["acme-recipes", str(other)])}
    assert job(run("+recipe=acme_x", "--cfg", "job", cwd=tmp_path, env=env))["lora"]["rank"] == 32
    assert job(run("+recipe=other_y", "--cfg", "job", cwd=tmp_path, env=env))["lora"]["rank"] == 4


def test_recipe_via_hydra_searchpath(tmp_path, team):
    cfg = job(run(f"hydra.searchpath=[file://{team}]", "+recipe=acme_x", "--cfg", "job", cwd=tmp_path))
    assert cfg["lora"]["rank"] == 32


def test_info_searchpath(tmp_path, team):
    r = run("--info", "searchpath", cwd=tmp_path, env={"LLMPIPE_RECIPES": str(team)})
    assert r.returncode == 0, r.stderr
    assert f"file://{team}" in r.stdout and "LLMPIPE_RECIPES" in r.stdout
    assert "llmpipe-recipes" in r.stdout          # the bundled recipe repository


def test_bundled_recipe_composes(tmp_path):
    cfg = job(run("+recipe=demo", "--cfg", "job", cwd=tmp_path))
    assert cfg["model"]["name_or_path"] == "builtin:tiny"


def test_duplicate_recipe_names_are_refused(tmp_path, team):
    twin = team_repo(tmp_path / "twin", rank=64)
    env = {"LLMPIPE_RECIPES": os.pathsep.join([str(team), str(twin)])}
    r = run("+recipe=acme_x", *TASK, cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"file://{team}" in r.stderr and f"file://{twin}" in r.stderr
    assert "recipe/acme_x.yaml" in r.stderr and "rename" in r.stderr
    assert "model/acme_tiny.yaml" in r.stderr        # a duplicated group option is reported too
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "outputs").exists()       # nothing was written


def test_duplicate_between_cli_searchpath_and_env(tmp_path, team):
    twin = team_repo(tmp_path / "twin", rank=64)
    r = run(f"hydra.searchpath=[file://{twin}]", "+recipe=acme_x", *VALID, cwd=tmp_path,
            env={"LLMPIPE_RECIPES": str(team)})
    assert r.returncode == 2
    assert f"file://{team}" in r.stderr and f"file://{twin}" in r.stderr


def test_team_recipe_shadowing_a_bundled_one_is_refused(tmp_path):
    shadow = team_repo(tmp_path / "shadow", recipe="demo")
    r = run("+recipe=demo", cwd=tmp_path, env={"LLMPIPE_RECIPES": str(shadow)})
    assert r.returncode == 2
    assert "recipe/demo.yaml" in r.stderr and f"file://{shadow}" in r.stderr


def test_missing_recipe_folder(tmp_path):
    missing = tmp_path / "no-such-folder"
    r = run(*VALID, cwd=tmp_path, env={"LLMPIPE_RECIPES": str(missing)})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "LLMPIPE_RECIPES" in r.stderr and str(missing) in r.stderr and "no such folder" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "outputs").exists()


def test_unknown_recipe_is_a_config_error(tmp_path, team):
    r = run("+recipe=acme_nope", cwd=tmp_path, env={"LLMPIPE_RECIPES": str(team)})
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_pip_package_with_its_own_plugin(tmp_path):
    """The documented pattern for a pip-installed team repository (docs/recipes.md)."""
    site = tmp_path / "site"
    pkg = site / "acme_llm_recipes"
    team_repo(pkg, recipe="acme_pkg", rank=12)
    (pkg / "__init__.py").write_text("")
    plugin = site / "hydra_plugins" / "acme_llm_recipes_searchpath"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(textwrap.dedent("""\
        from hydra.core.config_search_path import ConfigSearchPath
        from hydra.plugins.search_path_plugin import SearchPathPlugin


        class AcmeRecipesSearchPathPlugin(SearchPathPlugin):
            def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
                # only for llmpipe's app: its primary config is on the path as provider "main"
                if any(e.provider == "main" and e.path.endswith(("llmpipe.conf", "/conf"))
                       for e in search_path.get_path()):
                    search_path.append(provider="acme-llm-recipes", path="pkg://acme_llm_recipes")
        """))
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cfg = job(run("+recipe=acme_pkg", "--cfg", "job", cwd=tmp_path, env=env))
    assert cfg["lora"]["rank"] == 12
    r = tools("ls", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "acme_pkg" in r.stdout and "pkg://acme_llm_recipes" in r.stdout


def test_tools_ls(tmp_path, team):
    twin = team_repo(tmp_path / "twin", rank=64)
    team_repo(twin, recipe="twin_only")
    env = {"LLMPIPE_RECIPES": os.pathsep.join([str(team), str(twin)])}
    r = tools("ls", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.split()[:2] == ["acme_x", f"file://{team}"] and "DUPLICATE" in line for line in lines)
    assert any(line.split()[:2] == ["twin_only", f"file://{twin}"] for line in lines)
    assert any(line.split()[:1] == ["demo"] for line in lines)      # the bundled recipes
    assert "A team recipe" in r.stdout                              # the recipe's own description
    assert f"file://{twin}" in r.stderr and "acme_x" in r.stderr    # every duplicate is warned about
    assert tools("ls", "--check", cwd=tmp_path, env=env).returncode == 2
    assert tools("ls", "--check", cwd=tmp_path, env={"LLMPIPE_RECIPES": str(team)}).returncode == 0


def test_tools_ls_with_searchpath_override_and_groups(tmp_path, team):
    r = tools("ls", "--group", "model", f"hydra.searchpath=[file://{team}]", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "acme_tiny" in r.stdout and "tiny" in r.stdout


def test_tools_ls_missing_folder(tmp_path):
    r = tools("ls", "--check", cwd=tmp_path, env={"LLMPIPE_RECIPES": str(tmp_path / "gone")})
    assert r.returncode == 2 and "no such folder" in r.stderr


def test_same_folder_twice_is_not_a_duplicate(tmp_path, team):
    r = run(f"hydra.searchpath=[file://{team}]", "+recipe=acme_x", *TASK, cwd=tmp_path,
            env={"LLMPIPE_RECIPES": "acme-recipes"})       # relative here, absolute on the command line
    assert r.returncode == 0, r.stderr
    assert "dry run" in r.stdout


def test_missing_hydra_searchpath_folder(tmp_path):
    r = run(f"hydra.searchpath=[file://{tmp_path / 'gone'}]", *VALID, cwd=tmp_path)
    assert r.returncode == 2 and "hydra.searchpath" in r.stderr and "no such folder" in r.stderr
