"""Job folder names stay valid for any override list; Hydra's start-up shortcuts keep Hydra's answers, and are
only applied to the hydra-core versions they were written for."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from llmpipe import hydra_speedups
from llmpipe.config.resolvers import MAX_DIRNAME, _job_dirname
from llmpipe.hydra_speedups import SUPPORTED_HYDRA, _mode_named, hydra_version, type_hints

# Command lines whose Hydra answers (run mode, group listings) must not change under the patch.
ARGVS = [
    [],
    ["+recipe=demo", "run.dry_run=true"],
    ["+recipe=dpo_qwen", "model=tiny", "lora.rank=8,16", "pref.beta=0.1,0.5"],
    ["train.learning_rate=-1"],
    ["hydra/launcher=joblib", "+recipe=demo", "lora=dora"],
]
# The same app as ``python -m llmpipe`` with the patch's install turned into a no-op (Hydra's own path).
UNPATCHED = ("import runpy, llmpipe.hydra_speedups as h; h.install = lambda argv: False; "
             "runpy.run_module('llmpipe', run_name='__main__', alter_sys=True)")


def test_job_dirname_short_long_and_distinct():
    assert _job_dirname(3, "lora.rank=8,pref.beta=0.1") == "3_lora.rank=8,pref.beta=0.1"
    assert _job_dirname(0, "") == "0"
    assert _job_dirname(1, "data.dataset_dir=/a/b") == "1_data.dataset_dir=_a_b"
    long_a = _job_dirname(0, ",".join(f"k{i}=v{i}" for i in range(80)))
    long_b = _job_dirname(0, ",".join(f"k{i}=v{i}" for i in range(81)))
    assert len(long_a.encode()) <= MAX_DIRNAME and long_a != long_b and "/" not in long_a
    assert len(_job_dirname(2, "数据=" + "很长" * 200).encode()) <= MAX_DIRNAME


def test_mode_override_detection_and_type_hints():
    assert _mode_named(["hydra.mode=MULTIRUN"]) and _mode_named(["++hydra.mode=RUN"])
    assert not _mode_named(["-m", "lora.rank=8"])

    class A:
        x: int

    assert type_hints(A) == {"x": int} and type_hints(A) is type_hints(A)


def test_installed_hydra_is_a_version_the_patch_was_written_for():
    # Fails on a hydra-core upgrade ON PURPOSE: the patch replaces private methods of hydra._internal
    # (Hydra.get_mode, ConfigLoaderImpl.get_group_options / _parse_overrides_and_create_caching_repo).
    # On an unlisted version llmpipe silently runs Hydra's own (slower) code. Re-read those methods in the
    # new version, run this file on it, then add the version to SUPPORTED_HYDRA.
    assert hydra_version() in SUPPORTED_HYDRA, (
        f"hydra-core {hydra_version()} is not in llmpipe.hydra_speedups.SUPPORTED_HYDRA {SUPPORTED_HYDRA}: "
        "re-check the patch against this Hydra version")


@pytest.fixture
def originals(monkeypatch):
    """Hydra's own methods; whatever a test patches is put back afterwards."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.hydra import Hydra

    mode, options = Hydra.get_mode, ConfigLoaderImpl.get_group_options
    assert not getattr(mode, "llmpipe", False) and not getattr(options, "llmpipe", False)
    monkeypatch.setattr(Hydra, "get_mode", mode)
    monkeypatch.setattr(ConfigLoaderImpl, "get_group_options", options)
    return Hydra, ConfigLoaderImpl, mode, options


def test_other_hydra_versions_and_mode_overrides_keep_hydras_code(originals, monkeypatch):
    Hydra, ConfigLoaderImpl, mode, options = originals
    for other in ("1.3.9", "1.4.0", "1.3.2", None):
        monkeypatch.setattr(hydra_speedups, "hydra_version", lambda v=other: v)
        assert hydra_speedups.install([]) is False
        assert Hydra.get_mode is mode and ConfigLoaderImpl.get_group_options is options
    monkeypatch.undo()
    monkeypatch.setattr(Hydra, "get_mode", mode)
    monkeypatch.setattr(ConfigLoaderImpl, "get_group_options", options)
    assert hydra_speedups.install(["hydra.mode=MULTIRUN", "lora.rank=2,4"]) is True
    assert Hydra.get_mode is mode   # the command line names hydra.mode: Hydra reads it itself
    assert getattr(ConfigLoaderImpl.get_group_options, "llmpipe", False)


def test_patched_and_unpatched_hydra_give_the_same_answers(originals):
    """In-process, on llmpipe's real primary config: the run mode Hydra derives for each command line, every
    group listing (what --help prints and what glob() sweeps expand), and the composed configs."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from llmpipe.config.compose import hydra_context

    Hydra, ConfigLoaderImpl, mode, options = originals

    def answers(h):
        loader = h.config_loader
        groups = h.list_all_config_groups()
        listings = {g: (loader.get_group_options(g), loader.get_group_options(g, ObjectType.GROUP),
                        loader.get_group_options(g, ObjectType.CONFIG, "config"),
                        loader.get_group_options(g, ObjectType.CONFIG, "config", ["+recipe=demo"]))
                    for g in groups}
        modes = [h.get_mode("config", argv) for argv in ARGVS]
        composed = [OmegaConf.to_container(h.compose_config("config", argv, run_mode=RunMode.MULTIRUN,
                                                           with_log_configuration=False,
                                                           validate_sweep_overrides=False))
                    for argv in ARGVS]
        return groups, listings, h.format_config_groups(lambda g: True), modes, composed

    with hydra_context():
        before = answers(GlobalHydra.instance().hydra)
    assert hydra_speedups.install([]) is True
    assert getattr(Hydra.get_mode, "llmpipe", False) and getattr(ConfigLoaderImpl.get_group_options, "llmpipe", False)
    try:
        with hydra_context():
            after = answers(GlobalHydra.instance().hydra)
    finally:
        GlobalHydra.instance().clear()
    assert "lora" in before[0] and "launch" in before[0] and "hydra/launcher" in before[0]
    assert before[3] == [None] * len(ARGVS)   # hydra.mode is unset in llmpipe's config and recipes
    for b, a, what in zip(before, after, ("groups", "listings", "--help groups", "run modes", "configs")):
        assert a == b, f"the patch changed Hydra's {what}"


def _run(code_or_module, args, cwd):
    env = {**os.environ, "LLMPIPE_CACHE": str(cwd / "cache")}
    head = ["-c", code_or_module] if code_or_module != "llmpipe" else ["-m", "llmpipe"]
    return subprocess.run([sys.executable, *head, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_help_lists_groups_and_mode_override_still_multiruns(tmp_path):
    help_ = _run("llmpipe", ["--help"], tmp_path)
    assert help_.returncode == 0 and "lora:" in help_.stdout and "launch:" in help_.stdout
    proc = _run("llmpipe", ["hydra.mode=MULTIRUN", "+recipe=demo", "run.dry_run=true", "lora.rank=2,4"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "multirun").glob("*/*/[01]_*"))) == 2   # hydra.mode chose multirun: two jobs


def test_glob_sweep_dry_run_same_jobs_with_and_without_the_patch(tmp_path):
    """End to end: a -m sweep whose glob() is expanded from a group listing writes the same job configs."""
    argv = ["-m", "+recipe=demo", "run.dry_run=true", "generate=glob(*)"]
    jobs = {}
    for name, how in (("patched", "llmpipe"), ("unpatched", UNPATCHED)):
        cwd = tmp_path / name
        cwd.mkdir()
        proc = _run(how, argv, cwd)
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        jobs[name] = {p.parent.parent.name: yaml.safe_load(p.read_text().replace(str(cwd), "<cwd>"))
                      for p in (cwd / "multirun").rglob(".hydra/config.yaml")}
    assert sorted(j.rsplit(",", 1)[-1] for j in jobs["patched"]) == ["generate=default", "generate=greedy"]
    assert jobs["patched"] == jobs["unpatched"]


@pytest.mark.parametrize("params,task", [
    ([], ["+recipe=dpo_qwen", "model=tiny", "lora.rank=8,16", "pref.beta=0.1,0.5"]),
    (["lora.rank=4,8", "train.seed=3"], ["+recipe=demo", "lora.rank=8,16", "++train.max_steps=2", "~run.name",
                                         "data.dataset='a,b'", "model.name_or_path=/x/y z"]),
    (["pref.beta=range(1,4)"], ["hydra/launcher=joblib", "+recipe=demo"]),
])
def test_llmpipes_job_lists_are_the_basic_sweepers(params, task):
    """The sweeper's own check is skipped only for job lists llmpipe composed: they must be written alike."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from llmpipe.hydra_callbacks import sweep_jobs

    [batch] = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params + task), None)
    assert sweep_jobs(params + task) == [tuple(job) for job in batch]
    assert sweep_jobs(["pref.beta=interval(0.1,0.5)"]) is None


def test_the_sweepers_check_is_skipped_only_for_jobs_llmpipe_validated(monkeypatch):
    from hydra.plugins.sweeper import Sweeper

    calls = []
    monkeypatch.setattr(Sweeper, "validate_batch_is_legal", lambda self, batch: calls.append(batch))
    monkeypatch.setattr(hydra_speedups, "VALIDATED_JOBS", {("a=1", "b=2"), ("a=1", "b=3")})
    hydra_speedups._skip_validated_batches()
    hydra_speedups._skip_validated_batches()   # idempotent: one wrapper
    Sweeper.validate_batch_is_legal(None, [["a=1", "b=2"], ["a=1", "b=3"]])
    assert calls == []
    Sweeper.validate_batch_is_legal(None, [["a=1", "b=2"], ["a=2", "b=3"]])
    Sweeper.validate_batch_is_legal(None, [])
    assert calls == [[["a=1", "b=2"], ["a=2", "b=3"]], []]
