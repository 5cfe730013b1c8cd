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
    max_connections: int = param(
        256, "Open client connections at most; a request that arrives while more are open gets 429 (Retry-After) "
        "and its connection is closed. Keep it well above max_concurrency + max_queue.", ge=1, volatile=True,
    )
    idle_timeout: float = param(
        5.0, "Seconds a connection may stay open without a request in progress (new or kept alive) before the "
        "server closes it.", gt=0.0, volatile=True,
    )
    header_timeout: float = param(
        10.0, "Seconds from a request's first byte to the end of its headers; beyond that: 408 and the connection "
        "is closed.", gt=0.0, volatile=True,
    )
    body_timeout: float = param(
        30.0, "Seconds to receive a request's whole body once its headers are in; beyond that: 408 and the "
        "connection is closed.", gt=0.0, volatile=True,
    )
    max_images: int = param(
        4, "Images (image_url parts) one chat request may carry; more: 400. A vision-language model only: a "
        "text-only model refuses every image.", ge=0, volatile=True,
    )
    max_image_bytes: int = param(
        5 << 20, "Bytes one image may have (decoded); larger: 400. The request-body limit grows by max_images such "
        "images (as base64) for a vision-language model.", ge=1, volatile=True,
    )
    max_image_pixels: int = param(
        4096 * 4096, "Pixels (width x height) one image may have, read from its header before decoding; more: 400.",
        ge=1, volatile=True,
    )
    allow_local_images: bool = param(
        False, "Read image_url parts that name a local file (a path or file://) on the server's machine. Off: only "
        "base64 data URLs are accepted; remote http(s) URLs are always refused (400).", volatile=True,
    )
    model_name: Optional[str] = param(
        None, "Model id reported by /v1/models and in responses (default: the recipe's name, else 'llmpipe').",
        volatile=True,
    )
