"""Pre-flight: a recipe cannot smuggle code in through ``_target_``.

The whole composed config is scanned, including free-form fields (``pipeline.before``,
``train.lr_scheduler_kwargs``, ``launch.fsdp_config``, ...): a ``_target_`` outside a declared extension
point (:data:`llmpipe.safety.EXTENSION_POINTS`) is refused, and one at an extension point must be on the
allowlist (:func:`llmpipe.safety.allowed_prefixes`, never read from the config). Pre-flight checks the
spelling, then imports an allowlisted target and checks its purpose (a ``train.callbacks`` entry must be
a ``transformers.TrainerCallback`` subclass); :func:`llmpipe.safety.instantiate` checks the resolved
identity again when the object is built.

:func:`check_hydra_node` does the same for the ``hydra`` node (callbacks, logging factories), which the
rules never see; ``preflight()`` calls it, with :func:`env_problems` (a refused ``${oc.env:...}``) and
:func:`remote_code_problems` (``model.trust_remote_code`` only from the user's command line or environment),
which read the whole composed config too.

Importable on its own (``from llmpipe.config.rulebook import rule``); no torch.
"""
from __future__ import annotations

from typing import Any, Iterable

from llmpipe import safety
from llmpipe.config.rulebook import rule
from llmpipe.problems import NO_VALUE, Problem

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
        else:
            why = _purpose(target, path, point)
            if why:
                out.append(Problem(
                    path, target, f"refused at {point}: {why}",
                    f"subclasses of {safety.EXTENSION_POINTS[point]} from {_allowed_text(prefixes)}",
                    f"name a {safety.EXTENSION_POINTS[point].rsplit('.', 1)[-1]} subclass", rule=_NOT_ALLOWED,
                ))
    return out


def _purpose(target: str, path: str, point: str) -> str | None:
    """An allowlisted spelling must also name what the extension point is for: its own object a subclass of
    the point's base class, a nested one a class. The target is imported (its package is allowlisted), so a
    config with callbacks pays the import of transformers here; one without pays nothing."""
    try:
        safety.check_target(target, where=path, base=safety.EXTENSION_POINTS[point]
                            if safety.element_target(path, point) else None,
                            classes_only=not safety.element_target(path, point))
    except safety.UnsafeTargetError as e:
        return str(e).split(": ", 1)[-1]
    return None


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
    bad=[["train.callbacks=[{_target_: os.system}]"], ["train.callbacks=[{_target_: llmpipe_evil.Cb}]"],
         ["train.callbacks=[{_target_: transformers.set_seed}]"]],   # allowlisted package, but no callback class
    good=[["train.callbacks=[{_target_: transformers.EarlyStoppingCallback, early_stopping_patience: 3}]"]],
)
def _extension_point_targets_allowlisted(cfg: Any, env: Any) -> list[Problem]:
    """A ``_target_`` at an extension point must start with an allowlisted prefix (llmpipe., torch.optim.,
    transformers., peft., trl., or one from LLMPIPE_ALLOWED_TARGETS) and serve the point's purpose: at
    train.callbacks, a subclass of transformers.TrainerCallback (no function, no other class)."""
    return [p for p in target_problems(cfg) if p.rule == _NOT_ALLOWED]


# --- A secret's value stays in its own field --------------------------------------------------------------
_SECRET_ELSEWHERE = "secret-outside-secret-field"


def _strings(node: Any, path: str = ""):
    import dataclasses

    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from _strings(getattr(node, f.name), f"{path}.{f.name}" if path else f.name)
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


@rule(
    _SECRET_ELSEWHERE,
    keys=("model.hf_hub_token", "data.default_system"),
    bad=[["model.hf_hub_token=hf_ruleEXAMPLE12345678", "data.default_system=${model.hf_hub_token}"]],
    good=[["model.hf_hub_token=hf_ruleEXAMPLE12345678", "data.default_system=be brief"]],
)
def _secret_stays_in_its_field(cfg: Any, env: Any) -> list[Problem]:
    """A secret's value (a hub token set in model.*_hub_token or in the environment) may appear in no other
    config value: copied (``${model.hf_hub_token}``) into a system prompt or a path it would end up in the
    tokenized training data, stage.json files and the lock file."""
    from llmpipe import secrets

    own = set(secrets.secret_paths())
    values = set(secrets.known())
    for path, value in _strings(cfg):
        if path in own and len(value) >= 4 and value != secrets.REDACTED:
            values.add(value)
    values = {v for v in values if len(v) >= 8}   # a dummy HF_TOKEN=test must not refuse every "test" in the config
    out: list[Problem] = []
    for path, value in _strings(cfg):
        if path in own:
            continue
        if any(v in value for v in values):
            out.append(Problem(
                path, secrets.REDACTED, "holds the value of a secret (a hub token); it would be written into data,"
                " stage.json and the lock file in clear", "any value that is not a secret",
                f"remove the secret from {path}; llmpipe passes tokens to the hub client itself", rule=_SECRET_ELSEWHERE,
            ))
    return out


# --- model.trust_remote_code only from the user ---------------------------------------------------------------
ENV_TRUST_REMOTE_CODE = "LLMPIPE_TRUST_REMOTE_CODE"
_REMOTE = "model.trust_remote_code"


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def remote_code_in_force(cfg: Any) -> bool:
    from omegaconf import OmegaConf

    try:
        return _truthy(OmegaConf.select(cfg, _REMOTE, default=False))
    except Exception:   # noqa: BLE001 - an unresolvable value is the field checks' problem
        return False


def _opted_in(cfg: Any) -> bool:
    """The user's own opt-in: ``model.trust_remote_code=true`` among the command line's task overrides (Hydra
    records them in hydra.overrides.task; a recipe cannot write there), or LLMPIPE_TRUST_REMOTE_CODE=1."""
    import os

    from omegaconf import OmegaConf

    if _truthy(os.environ.get(ENV_TRUST_REMOTE_CODE, "")):
        return True
    try:
        node = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
        if node is None:   # the task function's config has no hydra node: the running job's HydraConfig has it
            from hydra.core.hydra_config import HydraConfig

            node = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
        overrides = OmegaConf.to_container(node, resolve=False) if not isinstance(node, list) else node
    except Exception:   # noqa: BLE001
        return False
    from hydra.core.override_parser.overrides_parser import OverridesParser

    chosen = False
    for line in overrides:
        if "trust_remote_code" not in str(line):
            continue
        try:
            [o] = OverridesParser.create().parse_overrides([str(line)])
        except Exception:   # noqa: BLE001
            continue
        if o.key_or_group == _REMOTE and not o.is_delete():
            chosen = not o.is_sweep_override() and _truthy(o.value())
    return chosen


def remote_code_problems(cfg: Any) -> list[Problem]:
    """``model.trust_remote_code: true`` runs the Python files of the model's folder: only the user may ask for
    it, never a recipe file (however the recipe arrived). Checked on the composed config with its hydra node."""
    if not remote_code_in_force(cfg) or _opted_in(cfg):
        return []
    return [Problem(
        _REMOTE, True, "a recipe turned on trust_remote_code, which runs the model folder's own Python code;"
        " only your command line or environment can allow that", "false, unless you opt in yourself",
        f"add model.trust_remote_code=true to your command, or set {ENV_TRUST_REMOTE_CODE}=1 in the environment",
        rule="trust-remote-code-opt-in",
    )]


REMOTE_CODE_NOTICE = ("llmpipe: model.trust_remote_code=true: the model's own Python code (from its folder or hub"
                      " repository) will run in this process")


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


def env_problems(cfg: Any) -> list[Problem]:
    """``${oc.env:VAR}`` of a variable that is not allowlisted (llmpipe.config.resolvers), anywhere in the task
    config: found by resolving every value that names ``oc.env``, before anything else resolves the config
    (the field checks would stop at the first one with a traceback)."""
    from omegaconf import OmegaConf

    from llmpipe.config.resolvers import ENV_ALLOWED_VAR, EnvNotAllowed

    try:
        raw = OmegaConf.to_container(cfg, resolve=False)
    except Exception:
        return []
    out: list[Problem] = []
    for path, value in _walk_strings(raw, ""):
        if path.split(".", 1)[0] == "hydra" or "oc.env" not in value:
            continue
        try:
            OmegaConf.select(cfg, path, throw_on_resolution_failure=True)
        except Exception as e:   # noqa: BLE001 - only a refusal is reported here; check() reports the rest
            cause = _cause(e, EnvNotAllowed)
            if cause is not None:
                out.append(Problem(path, NO_VALUE, str(cause).split("; allow it")[0],
                                   "environment variables on the allowlist; never a secret (HF_TOKEN, *TOKEN*,"
                                   " *KEY*, *SECRET*, *PASSWORD*)",
                                   f"remove the interpolation, or allow a harmless variable with {ENV_ALLOWED_VAR}="
                                   "NAME in the environment (never in the config)", rule="env-not-allowed"))
    return out


def _cause(e: BaseException | None, kind: type) -> BaseException | None:
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, kind):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def _walk_strings(node: Any, path: str):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


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
