"""Upload a finished export folder to the Hugging Face Hub (export.hub_model_id) with huggingface_hub.

The token comes from the environment (HF_TOKEN / HUGGING_FACE_HUB_TOKEN, or model.hf_hub_token, which llmpipe
moves into the environment of its own process): never from argv, never written anywhere. Offline or
unreachable, the push fails with a message saying so; the local export is never touched by a push.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from llmpipe.exporting.errors import PushError

TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def hub_token(secret_env: dict[str, str] | None = None) -> str | None:
    for var in TOKEN_VARS:
        value = (secret_env or {}).get(var) or os.environ.get(var)
        if value:
            return value
    return None


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _reason(e: Exception) -> str:
    from llmpipe.secrets import redact_text

    status = getattr(getattr(e, "response", None), "status_code", None)
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if status in (401, 403):
        return f"the hub refused the token (HTTP {status}): check that HF_TOKEN has write access to the repository"
    if status is not None:
        return redact_text(f"the hub answered HTTP {status}: {first}")
    return redact_text(f"could not reach the Hugging Face Hub at {_endpoint()} ({type(e).__name__}: {first})")


def push(folder: Path, repo_id: str, *, token: str | None, message: str, log: Callable[[str], None]) -> dict[str, Any]:
    from llmpipe.config.environment import offline

    intact = f"The local export in {folder} is complete and untouched; run the same command again to push it."
    var = offline()
    if var is not None:
        raise PushError(f"cannot push to the Hugging Face Hub while offline ({var}=1). {intact}")
    if not token:
        raise PushError("export.hub_model_id needs a Hugging Face token with write access: set HF_TOKEN in the "
                        f"environment (never in a recipe or on the command line). {intact}")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   commit_message=message)
    except Exception as e:  # network, HTTP and hub errors alike: say which, keep the local export
        raise PushError(f"pushing to the hub repository {repo_id} failed: {_reason(e)}. {intact}") from None
    oid = getattr(commit, "oid", None)
    url = getattr(commit, "commit_url", None) or f"{_endpoint()}/{repo_id}"
    log(f"pushed to {url}")
    return {"repo": repo_id, "commit": oid, "url": str(url)}
