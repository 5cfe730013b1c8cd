"""The Hydra entry point: ``python -m llmpipe`` and the ``llmpipe`` console script (the same app)."""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from llmpipe.resources import conf_path


@hydra.main(version_base="1.3", config_path=conf_path(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from llmpipe.app import run_task

    return run_task(cfg)


def cli() -> None:
    from llmpipe import secrets

    # First of all: whatever Hydra prints or logs from here on (--cfg, --info, job lines, errors, the job's log
    # file) has the command line's and the environment's secrets replaced.
    secrets.install(sys.argv[1:])
    from llmpipe.config.diagnose import explain_composition_failure
    from llmpipe.config.resolvers import register_resolvers
    from llmpipe.config.root import register_schema
    from llmpipe.hydra_callbacks import STATE

    from llmpipe.problems import exit_with
    from llmpipe.safety import hydra_settings_in_recipes

    from hydra_plugins.llmpipe_searchpath import register
    from llmpipe import hydra_speedups

    register_resolvers()
    register_schema()
    register()   # the recipe search path (plugin discovery cannot see a default editable install)
    hydra_speedups.install(sys.argv[1:])
    untrusted = hydra_settings_in_recipes(sys.argv[1:])
    if untrusted:
        exit_with(untrusted)
    try:
        main()
    except SystemExit as e:
        # Hydra exits 1 on any error. If it failed before our pre-flight callback existed, the config
        # itself could not be composed (unknown key, wrong type, missing recipe...): a config error.
        if e.code == 1 and not STATE["callback_ready"]:
            explain_composition_failure(sys.argv[1:])
            raise SystemExit(2) from None
        raise


if __name__ == "__main__":
    cli()
