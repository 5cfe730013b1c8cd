"""Secrets (hub tokens) are not config: they are read from the config or the environment, then kept out
of every file llmpipe writes, every log line and every child's argv."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable

REDACTED = "<redacted>"
# config path -> environment variables that provide it (first one set wins)
SECRET_ENV = {
    "model.hf_hub_token": ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
    "model.ms_hub_token": ("MODELSCOPE_API_TOKEN", "MS_HUB_TOKEN"),
    "model.om_hub_token": ("MODELERS_API_TOKEN", "OM_HUB_TOKEN"),
}
_KNOWN: set[str] = set()


def remember(values: Iterable[str | None]) -> None:
    for v in values:
        if v and isinstance(v, str) and len(v) >= 4:
            _KNOWN.add(v)


def known() -> set[str]:
    env_values = [os.environ.get(name) for names in SECRET_ENV.values() for name in names]
    remember(env_values)
    return set(_KNOWN)


def redact_text(text: str) -> str:
    for s in sorted(known(), key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text


def secret_paths() -> list[str]:
    """The config paths that hold secrets (tests keep this equal to the schema's ``secret=True`` parameters)."""
    return list(SECRET_ENV)


def take_from_config(cfg: Any) -> dict[str, str]:
    """Remember the secrets set in a (DictConfig) config; return {env var: value} for child processes."""
    from omegaconf import OmegaConf

    env: dict[str, str] = {}
    for path in secret_paths():
        try:
            value = OmegaConf.select(cfg, path, default=None)
        except Exception:
            value = None
        if value:
            remember([value])
            env[SECRET_ENV.get(path, (path.upper().replace(".", "_"),))[0]] = str(value)
    return env


def redact_config(cfg: Any) -> Any:
    """A copy of a DictConfig with every secret field replaced (unset secrets stay null)."""
    import copy

    from omegaconf import OmegaConf

    out = copy.deepcopy(cfg)
    for path in secret_paths():
        try:
            if OmegaConf.select(out, path, default=None):
                OmegaConf.update(out, path, REDACTED, merge=False)
        except Exception:
            pass
    return out


def redact_files(paths: Iterable[Path]) -> None:
    """Rewrite files (e.g. Hydra's .hydra/*.yaml snapshots) with every known secret replaced."""
    secrets = known()
    if not secrets:
        return
    for p in paths:
        p = Path(p)
        if not p.is_file():
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        new = redact_text(text)
        if new != text:
            tmp = p.with_name(p.name + ".tmp")
            tmp.write_text(new, encoding="utf-8")
            os.replace(tmp, p)


_TOKEN_LIKE = re.compile(r"\b(hf_[A-Za-z0-9]{8,})\b")


class RedactingFilter(logging.Filter):
    """Logging filter: replaces known secrets (and anything shaped like an HF token) in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        new = _TOKEN_LIKE.sub(REDACTED, redact_text(msg))
        if new != msg:
            record.msg, record.args = new, None
        return True
