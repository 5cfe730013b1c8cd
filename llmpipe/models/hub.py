"""Hub access for models and adapters: the keyword arguments every ``from_pretrained`` gets (revision, cache
folder, token, remote code), and a local snapshot of a hub repository (from the cache when offline)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llmpipe.config.environment import offline
from llmpipe.secrets import secret_value


def hub_kwargs(model_cfg: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {"revision": model_cfg.model_revision, "trust_remote_code": model_cfg.trust_remote_code}
    if model_cfg.cache_dir:
        kw["cache_dir"] = model_cfg.cache_dir
    token = secret_value("model.hf_hub_token", model_cfg.hf_hub_token)   # the config over HF_TOKEN
    if token:
        kw["token"] = token
    return kw


def snapshot(ref: str, model_cfg: Any) -> Path:
    """A local folder with the files of hub repository ``ref`` (only the local hub cache while offline).
    Raises what huggingface_hub raises; callers say what the files were for."""
    from huggingface_hub import snapshot_download

    kw = hub_kwargs(model_cfg)
    return Path(snapshot_download(ref, revision=kw.get("revision"), cache_dir=kw.get("cache_dir"),
                                  token=kw.get("token"), local_files_only=offline() is not None))
