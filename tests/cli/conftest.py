"""Fixtures of the CLI tests."""
from __future__ import annotations

import os

import pytest


@pytest.fixture
def cli_env(tmp_path_factory):
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(LLMPIPE_GPU_COUNT="0", LLMPIPE_OFFLINE="1", HF_HUB_CACHE=str(tmp_path_factory.mktemp("hub")),
               LLMPIPE_CACHE=str(tmp_path_factory.mktemp("store")))
    return env
