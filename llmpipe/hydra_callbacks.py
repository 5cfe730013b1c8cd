"""Hydra callbacks: pre-flight validation before Hydra writes anything, and secret redaction of the
files Hydra does write. Must stay import-light (no torch)."""
from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("llmpipe")
STATE = {"callback_ready": False}
MAX_VALIDATED_SWEEP_JOBS = 512


def preflight(cfg: DictConfig) -> None:
    """Validate a composed config; on problems print them and exit 2."""
    from llmpipe import secrets
    from llmpipe.config.rules.safety import check_hydra_node
    from llmpipe.pipeline.session import check
    from llmpipe.problems import exit_with
    from llmpipe.tools.recipes import check_recipe_sources

    secrets.take_from_config(cfg)
    _, problems = check(cfg)   # environment interpolation, the rules, then chained steps and "nothing to do"
    # The search path (duplicate recipe names, missing recipe folders) and the hydra node (callbacks,
    # logging factories) are outside the task config the rules see.
    problems = list(problems) + check_recipe_sources(cfg) + check_hydra_node(cfg)
    if problems:
        exit_with(problems)


class PreflightCallback(Callback):
    def __init__(self) -> None:
        STATE["callback_ready"] = True

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        preflight(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Validate every job of a basic sweep before the first job directory is created."""
        from llmpipe.hydra_speedups import VALIDATED_JOBS

        expose_master_config(config)
        for job, job_cfg in _expand_basic_sweep(config):
            preflight(job_cfg)
            if job is not None:
                VALIDATED_JOBS.add(job)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Print the sweep's results table and the best setting (the jobs wrote results.csv)."""
        from llmpipe.pipeline.sweep import summarize

        expose_master_config(config)
        text = summarize(Path(config.hydra.sweep.dir), str(OmegaConf.select(config, "run.objective_mode") or "auto"))
        if text:
            print(text, flush=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from llmpipe import secrets
        from llmpipe.config.rules.safety import REMOTE_CODE_NOTICE, remote_code_in_force

        secrets.take_from_config(config)
        if remote_code_in_force(config):   # allowed by the pre-flight: the user asked for it
            print(REMOTE_CODE_NOTICE, file=sys.stderr, flush=True)
        out = Path(config.hydra.runtime.output_dir)
        files = [out / (config.hydra.output_subdir or ".hydra") / n for n in ("config.yaml", "hydra.yaml", "overrides.yaml")]
        if config.hydra.mode is not None and str(config.hydra.mode).endswith("MULTIRUN"):
            files.append(Path(config.hydra.sweep.dir) / "multirun.yaml")
        secrets.redact_files(files)


def expose_master_config(config: DictConfig) -> None:
    """Between jobs Hydra's global HydraConfig is unset, so ``${llmpipe.choice:recipe}`` (``run.name``, part of
    ``hydra.sweep.dir``) fell back to "adhoc" wherever the sweep's own config was resolved: the launcher wrote
    multirun.yaml to multirun/adhoc/... and the summary looked for results.csv there, while the jobs (which see
    their own HydraConfig) wrote to multirun/<recipe>/... Exposing the sweep's config makes them agree."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        HydraConfig.instance().set_config(config)


def sweep_jobs(lines: list[str]) -> list[tuple[str, ...]] | None:
    """The jobs of a choice/range sweep over ``lines`` (the sweeper's ``hydra.sweeper.params`` as ``key=value``, then
    the command line's overrides), each an override list written as Hydra's basic sweeper writes it
    (``BasicSweeper.split_arguments``: a later value of a key replaces an earlier one); None for a search space
    that cannot be enumerated (interval, tag)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides(lines):
        key = o.get_key_element()
        if o.is_sweep_override():
            try:
                values = list(o.sweep_string_iterator())
            except Exception:   # interval() or other non-enumerable sweeps
                return None
            axes[key] = [f"{key}={v}" for v in values]
        else:
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
    return list(itertools.islice(itertools.product(*axes.values()), MAX_VALIDATED_SWEEP_JOBS))


def _expand_basic_sweep(config: DictConfig):
    """(override list, composed config) of each job of the sweep (:func:`sweep_jobs`), at most
    MAX_VALIDATED_SWEEP_JOBS; for a search space that cannot be enumerated, (None, the base config) only: other
    sweepers' jobs are validated in the task function instead."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import OverrideParseException

    params = OmegaConf.select(config, "hydra.sweeper.params")
    lines = [f"{key}={value}" for key, value in params.items()] if isinstance(params, DictConfig) else []
    try:   # the command line's overrides were parsed by Hydra already; a recipe's sweep params were not
        jobs = sweep_jobs(lines + list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False)))
    except OverrideParseException as exc:
        from llmpipe.problems import NO_VALUE, Problem, exit_with

        exit_with([Problem("hydra.sweeper.params", NO_VALUE, f"a sweep could not be parsed: {str(exc).splitlines()[0]}",
                           fix="a comma-separated list (lora.rank: 8,16) or range(a,b); "
                               "https://hydra.cc/docs/advanced/override_grammar/extended/")])
    if jobs is None:
        yield None, config
        return
    loader = GlobalHydra.instance().config_loader()
    for job in jobs:
        yield job, loader.load_sweep_config(config, list(job))
