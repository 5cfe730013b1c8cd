"""Untrusted recipes cannot run code: llmpipe.safety.instantiate and the pre-flight _target_ rules."""
from __future__ import annotations

import os
import sys
import types

import pytest
from omegaconf import OmegaConf

from llmpipe import safety
from llmpipe.problems import Problem
from llmpipe.config.rules.safety import check_hydra_node, target_problems

GOOD = "llmpipe.problems.Problem"   # allowlisted, cheap, torch-free


@pytest.fixture(autouse=True)
def _no_env_allowlist(monkeypatch):
    monkeypatch.delenv(safety.ENV_ALLOWED, raising=False)


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


def test_instantiate_allowed_target():
    obj = safety.instantiate(OmegaConf.create({"_target_": GOOD, "key": "k", "value": 1, "message": "m"}),
                             point="train.callbacks")
    assert isinstance(obj, Problem) and obj.key == "k"


def test_instantiate_all_list():
    nodes = OmegaConf.create([{"_target_": GOOD, "key": "a", "value": 1, "message": "m"}, None])
    out = safety.instantiate_all(nodes, point="train.callbacks")
    assert [p.key for p in out] == ["a"]


def test_instantiate_checks_nested_targets_and_kwargs():
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
    assert safety.EXTENSION_POINTS == ("train.callbacks",)
    with pytest.raises(ValueError, match="not a declared extension point"):
        safety.instantiate({"_target_": GOOD, "key": "k", "value": 1, "message": "m"}, point="model")


def test_extension_point_of():
    assert safety.extension_point_of("train.callbacks[0]._target_") == "train.callbacks"
    assert safety.extension_point_of("train.callbacks[0].args.x._target_") == "train.callbacks"
    assert safety.extension_point_of("train.callbacks_evil._target_") is None
    assert safety.extension_point_of("pipeline.before.x._target_") is None


def test_rule_scans_free_form_fields():
    cfg = {"pipeline": {"before": {"x": {"_target_": "os.system"}}},
           "train": {"lr_scheduler_kwargs": {"a": [{"_target_": GOOD}]},
                     "callbacks": [{"_target_": GOOD}, {"_target_": "os.system"}]}}
    found = {(p.key, p.rule) for p in target_problems(cfg)}
    assert found == {
        ("pipeline.before.x._target_", "target_outside_extension_point"),
        ("train.lr_scheduler_kwargs.a[0]._target_", "target_outside_extension_point"),
        ("train.callbacks[1]._target_", "target_not_allowlisted"),
    }


def test_rules_in_preflight():
    from llmpipe.pipeline.preflight import validate
    from llmpipe.config.compose import compose

    def rules_of(*overrides):
        _, problems = validate(compose(["model=tiny", "data.dataset=demo_sft", *overrides]))
        return {p.rule for p in problems}

    assert "target_outside_extension_point" in rules_of("+pipeline.before.x._target_=os.system")
    assert "target_not_allowlisted" in rules_of("train.callbacks=[{_target_: os.system}]")
    ok = rules_of(f"train.callbacks=[{{_target_: {GOOD}}}]")
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
