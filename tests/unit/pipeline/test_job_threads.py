"""Parallel sweep jobs share the cores instead of each taking one torch thread per core."""
from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf

from llmpipe.pipeline import job_threads


@pytest.fixture
def hydra_launcher(monkeypatch):
    from hydra.core.hydra_config import HydraConfig

    def set_launcher(**launcher):
        cfg = OmegaConf.create({"launcher": launcher})
        monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
        monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: cfg))
    for key in ("OMP_NUM_THREADS", job_threads._MARK):   # recorded, so that teardown restores what was there
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    return set_launcher


def test_joblib_jobs_get_their_share_of_the_cores(hydra_launcher, monkeypatch):
    import torch

    before = torch.get_num_threads()
    hydra_launcher(_target_="hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", n_jobs=2)
    lines: list[str] = []
    try:
        assert job_threads.share_cores(lines.append) == 4
        assert torch.get_num_threads() == 4 and os.environ["OMP_NUM_THREADS"] == "4"
        assert "2 sweep jobs at once on 8 cores: 4 torch thread(s)" in lines[0]
        # the next job in the same joblib worker: the value this module set is not mistaken for the user's
        assert job_threads.share_cores(lines.append) == 4
        hydra_launcher(_target_="hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", n_jobs=-1)
        assert job_threads.share_cores(lines.append) == 1
    finally:
        torch.set_num_threads(before)


def test_users_threads_and_other_launchers_are_left_alone(hydra_launcher, monkeypatch):
    hydra_launcher(_target_="hydra._internal.core_plugins.basic_launcher.BasicLauncher")
    assert job_threads.share_cores(print) is None
    hydra_launcher(_target_="hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", n_jobs=1)
    assert job_threads.share_cores(print) is None
    hydra_launcher(_target_="hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", n_jobs=2)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    lines: list[str] = []
    assert job_threads.share_cores(lines.append) is None
    assert "OMP_NUM_THREADS=3" in lines[0] and os.environ["OMP_NUM_THREADS"] == "3"
