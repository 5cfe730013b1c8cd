"""Compose a configuration outside the command line (tools, tests), exactly as the app would."""
from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig


def compose(overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from llmpipe.config.resolvers import register_resolvers
    from llmpipe.config.root import register_schema

    register_resolvers()
    register_schema()
    if GlobalHydra.instance().is_initialized():
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
    with initialize_config_module("llmpipe.conf", version_base="1.3", job_name="llmpipe"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
