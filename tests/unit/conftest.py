"""Shared fixtures of the unit tests (fast; no torch import)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hydra_compose():
    """One Hydra compose context per test module: ``hydra_compose(*overrides)`` composes the primary config
    with ``model=tiny`` (the offline built-in model) first, so the composition is complete."""
    from hydra import compose

    from llmpipe.config.compose import hydra_context

    with hydra_context():
        def _compose(*overrides: str, model: str = "tiny"):
            return compose("config", overrides=[f"model={model}", *overrides])

        yield _compose
