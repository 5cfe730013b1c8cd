"""Every shipped recipe composes, validates and plans (with its own model and with model=tiny); each opens
with the command that runs it and names a bundled dataset."""
from pathlib import Path

import pytest

from llmpipe.config.compose import compose
from llmpipe.pipeline.preflight import validate
from llmpipe.data.registry import find_dataset
from llmpipe.pipeline.dag import build_plan, plan_problems

RECIPE_DIR = Path(__file__).resolve().parents[3] / "recipes" / "recipe"
RECIPES = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def test_there_are_recipes():
    assert {"demo", "sft_qwen", "dpo_qwen"} <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_opens_with_its_command(name):
    head = (RECIPE_DIR / f"{name}.yaml").read_text().splitlines()[:4]
    assert head[0].strip() == "# @package _global_"
    assert any(f"python -m llmpipe +recipe={name}" in line for line in head), head


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates_offline_with_tiny(name):
    tiny = "tiny_vl" if name.startswith("vlm") else "tiny"   # a vision recipe needs the tiny vision-language model
    cfg = compose([f"+recipe={name}", f"model={tiny}"])
    validated, problems = validate(cfg)
    assert not problems, problems
    assert not plan_problems(validated.cfg)
    plan = build_plan(validated.cfg)
    assert any(n.kind.name == "train" for n in plan.nodes)
    for ds in validated.obj.data.dataset + validated.obj.data.eval_dataset:   # list flags: lists in the typed object
        assert find_dataset(ds, "data") is not None, ds


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_composes_with_its_own_model(name):
    cfg = compose([f"+recipe={name}"])
    assert cfg.model.name_or_path and cfg.model.name_or_path != "???"
