"""OmegaConf resolvers in the ``llmpipe.`` namespace. Registered explicitly by the entry points, before
Hydra starts (never as an import side effect)."""
from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from omegaconf import OmegaConf


def _choice(group: str, default: str = "") -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices
        value = choices.get(group)
    except Exception:  # outside a Hydra run (compose API, tools): fall back
        value = None
    if not value:
        return default
    return str(value).replace("/", "_")


MAX_DIRNAME = 100


def _job_dirname(num: Any, overrides: str = "") -> str:
    """A sweep job's folder name: ``<num>_<overrides>``, one path component (``/`` becomes ``_``), cut to
    MAX_DIRNAME characters with a short hash of the whole so that long override lists stay distinct
    (file systems refuse names over 255 bytes; results.csv keeps the full overrides)."""
    name = f"{num}_{overrides}".replace("/", "_") if overrides else str(num)
    if len(name.encode()) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return name.encode()[:MAX_DIRNAME - 11].decode(errors="ignore") + "-" + digest


# --- ${oc.env:VAR}: only variables on an allowlist -------------------------------------------------------
# A recipe is shared data; an unrestricted ${oc.env:...} lets it copy any environment variable (HF_TOKEN...)
# into a value that ends up in training data, stage.json files and the lock file.
ENV_ALLOWED_VAR = "LLMPIPE_ALLOWED_ENV"
# What llmpipe's own configuration reads (conf/launch/slurm.yaml, run.cache_root's default); a test keeps this
# list equal to the variables that conf/ and config/families/ name.
BUILTIN_ENV = ("LLMPIPE_CACHE", "SLURM_GPUS_ON_NODE", "SLURM_NNODES", "SLURM_NODEID", "MASTER_ADDR", "MASTER_PORT")
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSW|PASSWD|PWD|CREDENTIAL|AUTH", re.IGNORECASE)
_MISSING = object()
REFUSED: list[str] = []   # the messages of this process's refusals (a composition error explains them)


class EnvNotAllowed(ValueError):
    """``${oc.env:VAR}`` of a variable that is not on the allowlist (or that holds a secret)."""


def secret_env_name(name: str) -> bool:
    from llmpipe.secrets import SECRET_ENV

    return name in {v for names in SECRET_ENV.values() for v in names} or bool(_SECRET_NAME.search(name))


def allowed_env() -> tuple[str, ...]:
    extra = [v.strip() for v in os.environ.get(ENV_ALLOWED_VAR, "").split(",") if v.strip()]
    return BUILTIN_ENV + tuple(v for v in extra if not secret_env_name(v))


def _env(key: str, default: Any = _MISSING) -> Any:
    """OmegaConf's ``oc.env`` (same defaults and errors), for allowlisted variables only."""
    key = str(key)
    if secret_env_name(key) or key not in allowed_env():
        REFUSED.append(_refusal(key))
        raise EnvNotAllowed(REFUSED[-1])
    try:
        return os.environ[key]
    except KeyError:
        if default is not _MISSING:
            return str(default) if default is not None else None
        raise KeyError(f"Environment variable '{key}' not found") from None


def _refusal(key: str) -> str:
    if secret_env_name(key):
        return (
            f"${{oc.env:{key}}} is refused: {key} may hold a secret, and secrets never enter the config (llmpipe"
            " reads hub tokens from the environment itself: export HF_TOKEN and leave model.hf_hub_token unset)")
    return (f"${{oc.env:{key}}} is refused: {key} is not on the allowlist of environment variables a config may"
            f" read ({', '.join(allowed_env())}); allow it with {ENV_ALLOWED_VAR}={key} in the environment")


def register_resolvers() -> None:
    # replace=True: OmegaConf registers its own unrestricted oc.env on import
    OmegaConf.register_new_resolver("oc.env", _env, replace=True, use_cache=False)
    if not OmegaConf.has_resolver("llmpipe.choice"):
        OmegaConf.register_new_resolver("llmpipe.choice", _choice)
    if not OmegaConf.has_resolver("llmpipe.job_dirname"):
        OmegaConf.register_new_resolver("llmpipe.job_dirname", _job_dirname)
