"""``llmpipe.lock.yaml``: the readable record of one job: what each stage consumed and produced, whether it
ran or came from the store, the resolved config (secrets redacted), package versions and data identities."""
from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

import yaml

PACKAGES = ("llmpipe", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "hydra-core",
            "omegaconf", "tokenizers", "safetensors", "deepspeed", "bitsandbytes", "gptqmodel", "optimum")


def package_versions() -> dict[str, str]:
    import importlib.metadata as md   # here: a rejected config never writes a lock file

    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    return out


class LockFile:
    NAME = "llmpipe.lock.yaml"

    def __init__(self, job_dir: Path | None, config: dict, notes: list[str]):
        self.path = Path(job_dir) / self.NAME if job_dir else None
        self.data: dict[str, Any] = {
            "llmpipe_lock": 1,
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "status": "running",
            "stages": {},
            "objective": None,
            "notes": list(notes),
            "data": {},
            "packages": package_versions(),
            "config": config,
        }

    def stage(self, node_id: str, **fields: Any) -> None:
        self.data["stages"].setdefault(node_id, {}).update(fields)
        self.write()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.write()

    def discard(self) -> None:
        """This job writes no lock file after all (a follower node of a multi-node launch): remove it."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None

    def write(self) -> None:
        if self.path is None:
            return
        from llmpipe.secrets import redact_text

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # libyaml's emitter where PyYAML has it: the same YAML at a tenth of the pure-Python emitter's time (the
        # lock file is written after every stage, and a run's config is a few hundred keys)
        text = yaml.dump(self.data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False,
                         allow_unicode=True, default_flow_style=False)
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        tmp.write_text(redact_text(text), encoding="utf-8")
        os.replace(tmp, self.path)


def read(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
