"""Untrusted recipes cannot run code: llmpipe.safety.instantiate and the pre-flight _target_ rules."""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from llmpipe import safety
from llmpipe.problems import Problem
from llmpipe.config.rules.safety import check_hydra_node, target_problems

GOOD = "llmpipe.problems.Problem"   # allowlisted, cheap, torch-free


@pytest.fixture(autouse=True)
def _no_env_allowlist(monkeypatch):
    monkeypatch.delenv(safety.ENV_ALLOWED, raising=False)


@pytest.fixture
def problem_point(monkeypatch):
    """train.callbacks with a cheap, torch-free base class (the mechanism; the real base is TrainerCallback)."""
    monkeypatch.setitem(safety.EXTENSION_POINTS, "train.callbacks", GOOD)


@pytest.mark.parametrize("name, ok", [
    ("llmpipe.problems.Problem", True),
    ("torch.optim.AdamW", True),
    ("transformers.EarlyStoppingCallback", True),
    ("peft.LoraConfig", True),
    ("trl.DPOTrainer", True),
    ("llmpipe", True),
    ("llmpipe_evil.Callback", False),       # a prefix is matched on a dot boundary
    ("torch.load", False),                  # torch. is not allowlisted, only torch.optim.
    ("torch.optimx.Evil", False),
    ("os.system", False),
    ("builtins.eval", False),
    ("subprocess.Popen", False),
])
def test_name_allowlist(name, ok):
    assert safety.name_allowed(name) is ok


def test_allowlist_comes_from_the_environment_only(monkeypatch):
    assert not safety.name_allowed("acme_callbacks.Logger")
    monkeypatch.setenv(safety.ENV_ALLOWED, "acme_callbacks, other.pkg.")
    assert safety.name_allowed("acme_callbacks.Logger")
    assert safety.name_allowed("other.pkg.X")
    assert not safety.name_allowed("acme_callbacksevil.X")
    assert set(safety.BUILTIN_PREFIXES) < set(safety.allowed_prefixes())


def test_refused_module_is_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_mod_llmpipe_test.py").write_text(f"open({str(marker)!r}, 'w').write('x')\ndef f(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(safety.UnsafeTargetError, match="not allowlisted"):
        safety.check_target("evil_mod_llmpipe_test.f")
    assert not marker.exists()
    assert "evil_mod_llmpipe_test" not in sys.modules


def test_alias_in_an_allowed_module_is_resolved_and_refused(monkeypatch):
    """``llmpipe.x`` re-exporting ``os.system`` passes the spelling check but not the identity check."""
    mod = types.ModuleType("llmpipe._alias_test")
    mod.system = os.system
    mod.Popen = __import__("subprocess").Popen
    monkeypatch.setitem(sys.modules, "llmpipe._alias_test", mod)
    for name in ("llmpipe._alias_test.system", "llmpipe._alias_test.Popen"):
        with pytest.raises(safety.UnsafeTargetError, match="resolves to"):
            safety.check_target(name)
    with pytest.raises(safety.UnsafeTargetError, match="resolves to"):
        safety.instantiate({"_target_": "llmpipe._alias_test.system", "_args_": ["echo PWNED"]},
                           point="train.callbacks")


def test_instantiate_allowed_target(problem_point):
    obj = safety.instantiate(OmegaConf.create({"_target_": GOOD, "key": "k", "value": 1, "message": "m"}),
                             point="train.callbacks")
    assert isinstance(obj, Problem) and obj.key == "k"


def test_instantiate_all_list(problem_point):
    nodes = OmegaConf.create([{"_target_": GOOD, "key": "a", "value": 1, "message": "m"}, None])
    out = safety.instantiate_all(nodes, point="train.callbacks")
    assert [p.key for p in out] == ["a"]


def test_instantiate_checks_nested_targets_and_kwargs(problem_point):
    nested = {"_target_": GOOD, "key": "k", "message": "m",
              "value": {"_target_": "os.system", "_args_": ["echo PWNED"]}}
    with pytest.raises(safety.UnsafeTargetError, match=r"train\.callbacks\.value\._target_"):
        safety.instantiate(nested, point="train.callbacks")
    with pytest.raises(safety.UnsafeTargetError):
        safety.instantiate({"_target_": GOOD, "key": "k", "message": "m"}, point="train.callbacks",
                           value={"_target_": "os.system", "_args_": ["echo PWNED"]})


def test_instantiate_resolves_interpolations_before_checking():
    cfg = OmegaConf.create({"evil": "os.system", "cb": {"_target_": "${evil}", "_args_": ["echo PWNED"]}})
    with pytest.raises(safety.UnsafeTargetError, match="os.system"):
        safety.instantiate(cfg.cb, point="train.callbacks")


def test_instantiate_only_at_declared_points():
    assert safety.EXTENSION_POINTS == {"train.callbacks": "transformers.TrainerCallback"}
    with pytest.raises(ValueError, match="not a declared extension point"):
        safety.instantiate({"_target_": GOOD, "key": "k", "value": 1, "message": "m"}, point="model")


def test_extension_point_of():
    assert safety.extension_point_of("train.callbacks[0]._target_") == "train.callbacks"
    assert safety.extension_point_of("train.callbacks[0].args.x._target_") == "train.callbacks"
    assert safety.extension_point_of("train.callbacks_evil._target_") is None
    assert safety.extension_point_of("pipeline.before.x._target_") is None


def test_rule_scans_free_form_fields(problem_point):
    cfg = {"pipeline": {"before": {"x": {"_target_": "os.system"}}},
           "train": {"lr_scheduler_kwargs": {"a": [{"_target_": GOOD}]},
                     "callbacks": [{"_target_": GOOD}, {"_target_": "os.system"}]}}
    found = {(p.key, p.rule) for p in target_problems(cfg)}
    assert found == {
        ("pipeline.before.x._target_", "target_outside_extension_point"),
        ("train.lr_scheduler_kwargs.a[0]._target_", "target_outside_extension_point"),
        ("train.callbacks[1]._target_", "target_not_allowlisted"),
    }


def test_extension_point_takes_only_subclasses_of_its_base(problem_point):
    """Item 14: an allowlisted package is not enough; a function or an unrelated class is refused."""
    ok = {"_target_": GOOD, "key": "k", "value": 1, "message": "m"}
    assert isinstance(safety.instantiate(ok, point="train.callbacks"), Problem)
    for target, why in (("llmpipe.problems.exit_with", "not a class"),
                        ("llmpipe.problems.ConfigError", "not a subclass of llmpipe.problems.Problem")):
        with pytest.raises(safety.UnsafeTargetError, match=why):
            safety.instantiate({"_target_": target}, point="train.callbacks")
    # nested arguments may build objects (classes), never call a function
    with pytest.raises(safety.UnsafeTargetError, match="not a class"):
        safety.instantiate({**ok, "value": {"_target_": "llmpipe.problems.format_problems", "problems": []}},
                           point="train.callbacks")
    problems = target_problems({"train": {"callbacks": [
        {"_target_": "llmpipe.problems.exit_with"}, {"_target_": GOOD}, {"_target_": "llmpipe.problems.ConfigError"}]}})
    assert [p.key for p in problems] == ["train.callbacks[0]._target_", "train.callbacks[2]._target_"]
    assert all(p.rule == "target_not_allowlisted" and "refused at train.callbacks" in p.message for p in problems)


def test_trainer_callbacks_by_purpose():
    """The real base: transformers.testing_utils.run_command (which ran a command) is refused, a callback passes."""
    with pytest.raises(safety.UnsafeTargetError, match="not a class"):
        safety.check_target("transformers.testing_utils.run_command", base=safety.EXTENSION_POINTS["train.callbacks"])
    with pytest.raises(safety.UnsafeTargetError, match="not a subclass of transformers.TrainerCallback"):
        safety.check_target("transformers.TrainingArguments", base="transformers.TrainerCallback")
    safety.check_target("transformers.EarlyStoppingCallback", base="transformers.TrainerCallback")
    keys = [p.key for p in target_problems({"train": {"callbacks": [
        {"_target_": "transformers.testing_utils.run_command", "cmd": ["touch", "x"]},
        {"_target_": "transformers.EarlyStoppingCallback"}]}})]
    assert keys == ["train.callbacks[0]._target_"]


def test_rules_in_preflight():
    from llmpipe.pipeline.preflight import validate
    from llmpipe.config.compose import compose

    def rules_of(*overrides):
        _, problems = validate(compose(["model=tiny", "data.dataset=demo_sft", *overrides]))
        return {p.rule for p in problems}

    assert "target_outside_extension_point" in rules_of("+pipeline.before.x._target_=os.system")
    assert "target_not_allowlisted" in rules_of("train.callbacks=[{_target_: os.system}]")
    ok = rules_of("train.callbacks=[{_target_: transformers.EarlyStoppingCallback}]")
    assert not ok & {"target_outside_extension_point", "target_not_allowlisted"}


def test_hydra_node_callbacks_and_logging_factories():
    cfg = OmegaConf.create({"hydra": {
        "callbacks": {"ours": {"_target_": "llmpipe.hydra_callbacks.PreflightCallback"},
                      "log": {"_target_": "hydra.experimental.callbacks.LogJobReturnCallback"},
                      "evil": {"_target_": "builtins.print"}},
        "job_logging": {"filters": {"f": {"()": "os.system"}},
                        "handlers": {"ok": {"class": "logging.StreamHandler"},
                                     "bad": {"class": "subprocess.Popen"}}},
    }})
    keys = {p.key for p in check_hydra_node(cfg)}
    assert keys == {"hydra.callbacks.evil._target_", "hydra.job_logging.filters.f.()",
                    "hydra.job_logging.handlers.bad.class"}


# --- Item 13: every way a recipe folder reaches Hydra is scanned before Hydra starts ----------------------------

EVIL = "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: builtins.print\n"


@pytest.fixture
def evil_dirs(tmp_path, monkeypatch):
    from hydra_plugins.llmpipe_searchpath import register

    register()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMPIPE_RECIPES", raising=False)
    for name in ("cd", "sp", "env", "pkg_recipes_llmpipe_test"):
        (tmp_path / name / "recipe").mkdir(parents=True)
        (tmp_path / name / "recipe" / f"{name}.yaml").write_text(EVIL)
    return tmp_path


def _flagged(argv):
    return sorted(Path(p.key).stem for p in safety.hydra_settings_in_recipes(argv))


@pytest.mark.parametrize("argv", [
    ["--config-dir", "cd"], ["--config-dir=cd"], ["-cd", "cd"], ["-cd=cd"], ["--config-d=cd"],
    ["+recipe=cd", "--config-dir", "cd", "-m"],
])
def test_config_dir_in_every_spelling(evil_dirs, argv):
    assert _flagged(argv) == ["cd"]


@pytest.mark.parametrize("override", [
    "hydra.searchpath=[file://sp]", "+hydra.searchpath=[file://sp]", "++hydra.searchpath=[file://sp]",
    "hydra.searchpath=[pkg://nope_llmpipe_test,file://sp]", 'hydra.searchpath=["file://sp"]',
    "hydra.searchpath=['file://sp']", "hydra.searchpath=[ file://sp ]",
])
def test_searchpath_in_every_spelling(evil_dirs, override):
    assert _flagged([override]) == ["sp"]


def test_config_path_and_primary_config_name(evil_dirs):
    assert _flagged(["--config-path", str(evil_dirs / "cd"), "--config-name", "recipe/cd"]) == ["cd"]
    assert _flagged(["-cp", str(evil_dirs / "cd")]) == ["cd"]
    # a primary config reached by a relative name outside llmpipe's conf folder
    from llmpipe.resources import conf_path

    rel = os.path.relpath(evil_dirs / "cd" / "recipe" / "cd", conf_path())
    assert _flagged(["-cn", rel]) == ["cd"]
    assert _flagged([]) == []   # llmpipe's own conf (it sets hydra.callbacks by design) and the bundled recipes


def test_env_folders_and_pip_installed_recipe_packages(evil_dirs, monkeypatch):
    monkeypatch.setenv("LLMPIPE_RECIPES", str(evil_dirs / "env"))
    assert _flagged([]) == ["env"]
    monkeypatch.delenv("LLMPIPE_RECIPES")
    # a team package's own search-path plugin (as docs/recipes.md shows) is run like Hydra runs it
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    class TeamRecipesLlmpipeTest(SearchPathPlugin):
        active = True

        def manipulate_search_path(self, search_path):
            if TeamRecipesLlmpipeTest.active:
                search_path.append(provider="team", path=f"file://{evil_dirs / 'pkg_recipes_llmpipe_test'}")

    Plugins.instance().register(TeamRecipesLlmpipeTest)
    try:
        assert _flagged([]) == ["pkg_recipes_llmpipe_test"]
    finally:
        TeamRecipesLlmpipeTest.active = False


@pytest.mark.parametrize("text, where", [("a:\n\tb: 1\n", "line 2, column 1"), ("lora: [rank: 4\n", "line 2")])
def test_malformed_yaml_anywhere_is_a_clean_problem(evil_dirs, text, where):
    (evil_dirs / "cd" / "recipe" / "cd.yaml").write_text(text)
    [p] = safety.hydra_settings_in_recipes(["-cd", "cd"])
    assert p.rule == "recipe-yaml" and where in p.message and p.key.endswith("cd.yaml")


# --- Item 15: model.trust_remote_code only from the user ------------------------------------------------------------

def test_trust_remote_code_needs_the_users_own_opt_in(monkeypatch):
    from llmpipe.config.rules.safety import ENV_TRUST_REMOTE_CODE, remote_code_in_force, remote_code_problems

    monkeypatch.delenv(ENV_TRUST_REMOTE_CODE, raising=False)

    def cfg(value, overrides):
        return OmegaConf.create({"model": {"trust_remote_code": value}, "hydra": {"overrides": {"task": overrides}}})

    from_recipe = cfg(True, ["+recipe=shared"])
    [p] = remote_code_problems(from_recipe)
    assert p.key == "model.trust_remote_code" and ENV_TRUST_REMOTE_CODE in p.fix
    assert remote_code_problems(cfg(False, [])) == []
    for line in ("model.trust_remote_code=true", "++model.trust_remote_code=True"):
        assert remote_code_problems(cfg(True, ["+recipe=shared", line])) == []
    assert remote_code_problems(cfg(True, ["model.trust_remote_code=true", "model.trust_remote_code=false"]))
    assert remote_code_problems(cfg(True, ["model.trust_remote_code=true,false"]))   # a sweep is no opt-in
    assert remote_code_problems(OmegaConf.create({"model": {"trust_remote_code": True}}))   # no hydra node
    monkeypatch.setenv(ENV_TRUST_REMOTE_CODE, "1")
    assert remote_code_problems(from_recipe) == [] and remote_code_in_force(from_recipe)
