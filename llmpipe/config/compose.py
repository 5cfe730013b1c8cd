"""Compose a configuration outside the command line (tools, tests), exactly as the app would."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

from omegaconf import DictConfig


@contextmanager
def hydra_context(job_name: str = "llmpipe") -> Iterator[None]:
    """Initialise Hydra on llmpipe's primary config (checkout folder or installed package)."""
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from hydra_plugins.llmpipe_searchpath import register
    from llmpipe.config.resolvers import register_resolvers
    from llmpipe.config.root import register_schema
    from llmpipe.resources import conf_path

    register_resolvers()
    register_schema()
    register()   # the recipe search path, also where plugin discovery cannot see it
    GlobalHydra.instance().clear()
    where = conf_path()
    ctx = (initialize_config_module(where[len("pkg://"):], version_base="1.3", job_name=job_name)
           if where.startswith("pkg://") else initialize_config_dir(where, version_base="1.3", job_name=job_name))
    with ctx:
        yield


def compose(overrides: Sequence[str] = (), *, return_hydra_config: bool = False, job_name: str = "llmpipe") -> DictConfig:
    """Compose llmpipe's primary config in-process, the way ``python -m llmpipe`` would. Inside an initialised
    Hydra (tests that hold one) it composes there; otherwise it initialises Hydra for this call only."""
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
    try:
        with hydra_context(job_name):
            return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()
