"""How llmpipe pays less for importing the ML libraries: the installed-package scan runs once per process,
and a waiting sweep job imports what its stages will import."""
from __future__ import annotations

import importlib.metadata
import sys
from types import SimpleNamespace

import pytest

from llmpipe.models import library_imports


@pytest.fixture
def fresh_scan(monkeypatch):
    scans = []

    def scan():
        scans.append(1)
        return {"yaml": ["PyYAML"], "torch": ["torch"]}

    monkeypatch.setattr(importlib.metadata, "packages_distributions", scan)
    return scans


def test_the_package_scan_runs_once_and_each_caller_gets_its_own_copy(fresh_scan):
    library_imports.once_package_scan()
    library_imports.once_package_scan()   # idempotent: not wrapped twice
    first = importlib.metadata.packages_distributions()
    first["yaml"].append("mutated")
    first["new"] = ["x"]
    second = importlib.metadata.packages_distributions()
    assert second == {"yaml": ["PyYAML"], "torch": ["torch"]}
    assert len(fresh_scan) == 1


def _cfg(stage, finetuning="lora"):
    return SimpleNamespace(train=SimpleNamespace(stage=stage, finetuning_type=finetuning))


def test_the_modules_are_those_the_stages_import():
    assert library_imports.modules_for(_cfg("dpo")) == [
        "transformers.modeling_utils", "transformers.trainer", "datasets", "peft", "trl.trainer.dpo_trainer"]
    assert library_imports.modules_for(_cfg("sft", "full")) == [
        "transformers.modeling_utils", "transformers.trainer", "datasets"]
    assert "trl.trainer.kto_trainer" in library_imports.modules_for(_cfg("kto"))


def test_warming_imports_them_and_leaves_a_missing_one_to_its_stage(monkeypatch):
    monkeypatch.setattr(library_imports, "modules_for", lambda cfg: ["json", "llmpipe_no_such_module"])
    monkeypatch.delitem(sys.modules, "json", raising=False)
    library_imports.warm_libraries(_cfg("sft"))
    assert "json" in sys.modules and "llmpipe_no_such_module" not in sys.modules
