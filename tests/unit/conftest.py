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


@pytest.fixture(scope="module")
def fast_compose(hydra_compose):
    """``fast_compose(*overrides)``: the same config as ``hydra_compose``, at a fraction of the cost. Hydra composes
    once per distinct set of group choices (overrides without a dot: ``model=...``, ``+recipe=...``,
    ``hydra/launcher=...``), cached; the value overrides (``lora.rank=8``, ``+train.x=1``, ``~data.y``) are then
    applied to a copy by Hydra's own parser and applier, exactly as Hydra applies them after composing the
    defaults. A full Hydra compose costs ~0.2 s, most of it the defaults tree; the rule tables have ~1,000 cases."""
    import copy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    bases: dict = {}

    def _compose(*overrides: str, model: str = "tiny"):
        parsed = parser.parse_overrides(list(overrides))
        is_value = ["." in o.key_or_group and "/" not in o.key_or_group and o.package is None
                    and not o.key_or_group.startswith("hydra") for o in parsed]
        groups = tuple(s for s, v in zip(overrides, is_value) if not v)
        if (model, groups) not in bases:
            bases[model, groups] = hydra_compose(*groups, model=model)
        cfg = copy.deepcopy(bases[model, groups])
        ConfigLoaderImpl._apply_overrides_to_config([o for o, v in zip(parsed, is_value) if v], cfg)
        return cfg

    return _compose
