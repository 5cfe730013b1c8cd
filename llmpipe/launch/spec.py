"""What the parent hands to its ranks: the node's resolved config (``config.yaml``, secrets redacted) and a
spec (``spec.json``: stage kind, inputs, output and work folders). Workers rebuild the StageContext from
these two files and never run Hydra; secrets come back from the environment. Import-light (no torch)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

SPEC_VERSION = 1


def secret_env_names() -> dict[str, str]:
    """config path of each secret -> the environment variable that carries it to child processes
    (the same names :func:`llmpipe.secrets.take_from_config` produces)."""
    from llmpipe import secrets

    return {p: secrets.SECRET_ENV.get(p, (p.upper().replace(".", "_"),))[0] for p in secrets.secret_paths()}


def write_spec(ctx: Any, folder: Path, *, launch_dir: Path) -> Path:
    """Write config.yaml + spec.json for ``ctx`` into ``folder``; returns the spec path."""
    from llmpipe.secrets import redact_config

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    _atomic_write(config, OmegaConf.to_yaml(redact_config(ctx.cfg), resolve=True))
    spec = {
        "version": SPEC_VERSION, "node_id": ctx.node_id, "kind": ctx.kind.name, "fingerprint": ctx.fingerprint,
        "config": str(config), "inputs": {role: str(p) for role, p in ctx.inputs.items()}, "out": str(ctx.out),
        "work": str(ctx.work), "cache_root": str(ctx.cache_root),
        "job_dir": str(ctx.job_dir) if ctx.job_dir else None, "launch_dir": str(launch_dir),
        "secrets": {path: env for path, env in secret_env_names().items()},
    }
    path = folder / "spec.json"
    _atomic_write(path, json.dumps(spec, indent=2))
    return path


def read_spec(path: Path) -> dict[str, Any]:
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    if spec.get("version") != SPEC_VERSION:
        raise ValueError(f"{path}: worker spec version {spec.get('version')} (this llmpipe reads {SPEC_VERSION})")
    return spec


def load_config(spec: dict[str, Any], environ=os.environ) -> DictConfig:
    """The typed config of the node: the saved YAML merged onto the schema, secrets restored from the
    environment."""
    from llmpipe import secrets
    from llmpipe.config.root import LlmpipeConfig

    cfg = OmegaConf.merge(OmegaConf.structured(LlmpipeConfig), OmegaConf.load(spec["config"]))
    for path, env_name in spec.get("secrets", {}).items():
        if OmegaConf.select(cfg, path, default=None) == secrets.REDACTED:
            value = environ.get(env_name)
            OmegaConf.update(cfg, path, value, merge=False)
            secrets.remember([value])
    return cfg


def context_from_spec(spec: dict[str, Any], log: Callable[[str], None], environ=os.environ):
    """The StageContext the stage function gets in a rank."""
    import llmpipe.stages.kinds  # noqa: F401  (registers the stage kinds)
    from llmpipe.config.typed import typed
    from llmpipe.stages.base import KINDS, StageContext

    cfg = load_config(spec, environ)
    secret_env = {env: environ[env] for env in spec.get("secrets", {}).values() if env in environ}
    return StageContext(
        node_id=spec["node_id"], kind=KINDS[spec["kind"]], cfg=cfg, obj=typed(cfg),
        inputs={role: Path(p) for role, p in spec["inputs"].items()}, out=Path(spec["out"]), work=Path(spec["work"]),
        fingerprint=spec["fingerprint"], cache_root=Path(spec["cache_root"]),
        job_dir=Path(spec["job_dir"]) if spec.get("job_dir") else None, secret_env=secret_env, log=log,
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
