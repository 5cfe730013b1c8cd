"""``serve.*``: the OpenAI-compatible server (``python -m llmpipe.serve``). Never part of any fingerprint.
The API key is not config: it comes from the environment variable LLMPIPE_API_KEY."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import param


@dataclass
class ServeConfig:
    host: str = param("127.0.0.1", "Address the server listens on (0.0.0.0 = every interface).", volatile=True)
    port: int = param(8000, "TCP port of the server (0 = any free port, printed at start).", ge=0, le=65535,
                      volatile=True)
    max_concurrency: int = param(
        4, "Chat completions generated at the same time; more wait in the queue.", ge=1, volatile=True,
    )
    max_queue: int = param(
        16, "Requests that may wait for a generation slot; beyond that the server answers 429.", ge=0, volatile=True,
    )
    model_name: Optional[str] = param(
        None, "Model id reported by /v1/models and in responses (default: the recipe's name, else 'llmpipe').",
        volatile=True,
    )
