"""How llmpipe pays less for importing the ML libraries: the installed-package scan runs once per process,
and a waiting sweep job imports what its stages will import."""
from __future__ import annotations

import importlib.metadata
import sys
from types import SimpleNamespace

import pytest

from llmpipe.models import library_imports


@pytest.fixture
def fresh_scan(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
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


def test_the_scan_is_kept_on_disk_for_the_next_run_of_the_same_environment(fresh_scan, tmp_path, monkeypatch):
    path = library_imports.scan_cache()
    assert path.is_relative_to(tmp_path / "user-cache" / "llmpipe" / "packages")
    first = library_imports._cached(importlib.metadata.packages_distributions, path)
    again = library_imports._cached(importlib.metadata.packages_distributions, path)   # a later run
    assert first == again == {"yaml": ["PyYAML"], "torch": ["torch"]} and len(fresh_scan) == 1
    # a distribution installed into a folder on sys.path changes the folder's mtime, so the key
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = library_imports.scan_cache()
    (site / "newpkg-1.0.dist-info").mkdir()
    import os
    os.utime(site, ns=(1, 10**18))   # a clearly different mtime, whatever the file system's resolution
    after = library_imports.scan_cache()
    assert before != after and before.parent == after.parent
    library_imports._cached(importlib.metadata.packages_distributions, after)
    assert len(fresh_scan) == 2
    assert {p.name for p in after.parent.glob("*.json")} == {path.name, after.name}   # one per key
    for old in after.parent.glob("*.json"):
        os.utime(old, ns=(1, 10**9))   # older than anything written next
    monkeypatch.setattr(library_imports, "KEEP_SCANS", 1)
    library_imports._cached(importlib.metadata.packages_distributions, after.parent / "newer.json")
    assert [p.name for p in after.parent.glob("*.json")] == ["newer.json"]   # the oldest go beyond KEEP_SCANS


def test_a_damaged_or_unwritable_cache_falls_back_to_the_scan(fresh_scan, tmp_path):
    path = tmp_path / "c" / "scan.json"
    path.parent.mkdir()
    path.write_text("{not json")
    assert library_imports._cached(importlib.metadata.packages_distributions, path)["torch"] == ["torch"]
    assert len(fresh_scan) == 1 and '"torch"' in path.read_text()   # rewritten whole
    path.write_text('["a list"]')
    library_imports._cached(importlib.metadata.packages_distributions, path)
    assert len(fresh_scan) == 2
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert library_imports._cached(importlib.metadata.packages_distributions, blocked / "x" / "scan.json")["yaml"]


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
