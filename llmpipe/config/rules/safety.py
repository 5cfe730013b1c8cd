"""Pre-flight: a recipe cannot smuggle code in through ``_target_``.

The whole composed config is scanned, including free-form fields (``pipeline.before``,
``train.lr_scheduler_kwargs``, ``launch.fsdp_config``, ...): a ``_target_`` outside a declared extension
point (:data:`llmpipe.safety.EXTENSION_POINTS`) is refused, and one at an extension point must be on the
allowlist (:func:`llmpipe.safety.allowed_prefixes`, never read from the config). Pre-flight checks the
spelling only (importing the target could import torch); :func:`llmpipe.safety.instantiate` checks the
resolved identity again when the object is built.

:func:`check_hydra_node` does the same for the ``hydra`` node (callbacks, logging factories), which the
rules never see; ``preflight()`` calls it.

Importable on its own (``from llmpipe.config.rulebook import rule``); no torch.
"""
from __future__ import annotations

from typing import Any, Iterable

from llmpipe import safety
from llmpipe.config.rulebook import rule
from llmpipe.problems import Problem

_OUTSIDE = "target_outside_extension_point"
_NOT_ALLOWED = "target_not_allowlisted"
# What the hydra node may name: llmpipe's own callback and redacting filter, Hydra's shipped callbacks,
# the stdlib logging handlers (plus LLMPIPE_ALLOWED_TARGETS).
HYDRA_NODE_PREFIXES = ("llmpipe.", "hydra.experimental.callbacks.", "logging.")


def _points_text() -> str:
    return ", ".join(safety.EXTENSION_POINTS)


def _allowed_text(prefixes: Iterable[str]) -> str:
    return ", ".join(p.rstrip(".") + ".*" for p in prefixes)


def target_problems(cfg: Any, root: str = "") -> list[Problem]:
    """Problems for every ``_target_`` in ``cfg`` (a typed config object, a DictConfig or plain dicts)."""
    out: list[Problem] = []
    prefixes = safety.allowed_prefixes()
    for path, target in safety.iter_targets(cfg, root):
        point = safety.extension_point_of(path)
        if point is None:
            out.append(Problem(
                path, target,
                "_target_ is only honoured at a declared extension point; a recipe cannot make llmpipe run"
                " code from here", f"_target_ under {_points_text()}",
                f"remove it (~{path}); built-in choices are registry names (see llmpipe-tools explain)",
                rule=_OUTSIDE,
            ))
        elif not isinstance(target, str) or not safety.name_allowed(target, prefixes):
            out.append(Problem(
                path, target, f"this _target_ is not on the allowlist of {point}", _allowed_text(prefixes),
                f"use an allowlisted class, or trust its package with {safety.ENV_ALLOWED}=<prefix> in the"
                " environment (never in the config)", rule=_NOT_ALLOWED,
            ))
    return out


@rule(
    _OUTSIDE,
    keys=("pipeline.before", "train.lr_scheduler_kwargs"),
    bad=[["+pipeline.before.x._target_=os.system"],
         ["+train.lr_scheduler_kwargs.x._target_=llmpipe.app.run_task"]],
    good=[["+train.lr_scheduler_kwargs.num_cycles=2"]],
)
def _no_target_outside_extension_points(cfg: Any, env: Any) -> list[Problem]:
    """``_target_`` anywhere except under a declared extension point (``train.callbacks``) is refused."""
    return [p for p in target_problems(cfg) if p.rule == _OUTSIDE]


@rule(
    _NOT_ALLOWED,
    keys=("train.callbacks",),
    bad=[["train.callbacks=[{_target_: os.system}]"], ["train.callbacks=[{_target_: llmpipe_evil.Cb}]"]],
    good=[["train.callbacks=[{_target_: transformers.EarlyStoppingCallback, early_stopping_patience: 3}]"]],
)
def _extension_point_targets_allowlisted(cfg: Any, env: Any) -> list[Problem]:
    """A ``_target_`` at an extension point must start with an allowlisted prefix (llmpipe., torch.optim.,
    transformers., peft., trl., or one from LLMPIPE_ALLOWED_TARGETS)."""
    return [p for p in target_problems(cfg) if p.rule == _NOT_ALLOWED]


def check_hydra_node(cfg: Any) -> list[Problem]:
    """Targets and logging factories in the ``hydra`` node of a composed config (callbacks, logging):
    only llmpipe's, Hydra's shipped callbacks and stdlib logging classes (+ LLMPIPE_ALLOWED_TARGETS).

    Hydra builds ``hydra.callbacks`` and applies ``hydra.hydra_logging`` before any callback runs, so for
    those this reports rather than prevents; ``hydra.job_logging`` is applied after the pre-flight."""
    from omegaconf import OmegaConf

    hydra = OmegaConf.select(cfg, "hydra", default=None)
    if hydra is None:
        return []
    extra = tuple(p for p in safety.allowed_prefixes() if p not in safety.BUILTIN_PREFIXES)
    prefixes = HYDRA_NODE_PREFIXES + extra
    out: list[Problem] = []
    checked = (("callbacks", ("_target_",)), ("job_logging", ("()", "class")), ("hydra_logging", ("()", "class")))
    for sub, keys in checked:
        node = OmegaConf.select(hydra, sub, default=None)
        if node is None:
            continue
        try:
            data = OmegaConf.to_container(node, resolve=False)
        except Exception:
            continue
        for path, value in _walk_keys(data, f"hydra.{sub}", keys):
            if not isinstance(value, str) or not safety.name_allowed(value, prefixes):
                out.append(Problem(
                    path, value, "names code outside the allowlist of the hydra node (a recipe may not add"
                    " Hydra callbacks or logging factories)", _allowed_text(prefixes),
                    f"remove it, or trust the package with {safety.ENV_ALLOWED}=<prefix> in the environment",
                    rule="hydra_node_target",
                ))
    return out


def _walk_keys(node: Any, path: str, keys: tuple[str, ...]):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in keys and not isinstance(v, (dict, list)):
                yield f"{path}.{k}", v
            else:
                yield from _walk_keys(v, f"{path}.{k}", keys)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_keys(v, f"{path}[{i}]", keys)
