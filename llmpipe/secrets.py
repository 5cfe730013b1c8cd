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
    "train.swanlab_api_key": ("SWANLAB_API_KEY",),
    "train.swanlab_lark_secret": ("SWANLAB_LARK_SECRET",),
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
    """``text`` with every known secret value replaced, and the value of every secret key written out
    (``model.hf_hub_token=...``, ``hf_hub_token: ...``) replaced too, even when the value is not known yet
    (a recipe's, before composition finished)."""
    for s in sorted(known(), key=len, reverse=True):
        text = text.replace(s, REDACTED)
    if "_hub_token" in text or "swanlab_" in text:
        text = _SECRET_KEY_VALUE.sub(lambda m: m.group("k") + m.group("sep") + REDACTED, text)
    return text


# ``hf_hub_token: value`` (YAML), ``model.hf_hub_token=value`` (an override), ``'hf_hub_token': 'value'``
# (a printed dict). null/None/empty values and interpolations are left as they are.
_SECRET_KEY_VALUE = re.compile(
    r"(?P<k>\b(?:" + "|".join(re.escape(p.rsplit(".", 1)[-1]) for p in SECRET_ENV) + r"))"
    r"(?P<sep>['\"]?[ \t]*[:=][ \t]*['\"]?)"
    r"(?!null\b|None\b|~|<redacted>|\$\{|['\",\]\}\s]|$)"
    r"[^\s,'\"\]\}]+",
)


def secret_override_values(argv: Iterable[str]) -> list[str]:
    """The values that command-line overrides give secret keys (``model.hf_hub_token=X``, ``+...``,
    ``++...``, quoted): remembered before Hydra starts, so nothing Hydra prints or writes shows them."""
    out = []
    leaves = {p: p.rsplit(".", 1)[-1] for p in SECRET_ENV}
    for arg in argv:
        key, sep, value = str(arg).partition("=")
        key = key.strip().lstrip("+~").strip("'\"")
        if not sep or (key not in leaves and key not in leaves.values()):
            continue
        value = value.strip().strip("'\"")
        out.append(value)
        out += [v.strip().strip("'\"") for v in value.split(",")]   # a sweep over tokens
    return [v for v in out if v and v not in ("null", "None") and "${" not in v]   # an interpolation is no value


def secret_value(path: str, config_value: str | None, environ=None) -> str | None:
    """The secret ``path`` as llmpipe uses it: the config's value (a recipe or an override) when it is set, else
    the first of its environment variables that is set. The config wins because it is the more specific of the
    two: a run that names a token means that token, whatever the shell exports."""
    if config_value:
        return str(config_value)
    environ = os.environ if environ is None else environ
    return next((environ[name] for name in SECRET_ENV.get(path, ()) if environ.get(name)), None)


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


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Replace known secrets (and anything shaped like an HF token) in a log record's message."""
    try:
        msg = record.getMessage()
    except Exception:
        return record
    new = _TOKEN_LIKE.sub(REDACTED, redact_text(msg))
    if new != msg:
        record.msg, record.args = new, None
    return record


class RedactingFilter(logging.Filter):
    """Logging filter: replaces known secrets (and anything shaped like an HF token) in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


class RedactingStream:
    """A text stream that redacts what is written to it (``sys.stdout``/``sys.stderr`` of the CLI: what
    Hydra prints itself -- ``--cfg``, ``--info``, its job lines, its errors -- and every summary)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if isinstance(text, str) and text:
            self._stream.write(_TOKEN_LIKE.sub(REDACTED, redact_text(text)))
            return len(text)
        return self._stream.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install(argv: Iterable[str] = ()) -> None:
    """For a command-line process: remember the secrets given on the command line and in the environment,
    redact every log record when it is created (whatever handlers Hydra configures later: console, the job's
    log file) and everything written to stdout/stderr. Idempotent."""
    import sys

    remember(secret_override_values(argv))
    known()
    old = logging.getLogRecordFactory()
    if not getattr(old, "llmpipe_redacting", False):
        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(old(*args, **kwargs))

        factory.llmpipe_redacting = True   # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
