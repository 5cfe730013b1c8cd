"""Opening the images of multimodal rows: local paths (relative to data.media_dir, default data.dataset_dir),
``{"path": ...}`` and ``{"bytes": ...}`` dicts (what ``datasets.Image`` stores), raw bytes, and ``data:`` URLs.
Remote URLs are refused (llmpipe runs offline). Every failure is a :class:`MediaError` whose message names the
file and the reason; the loader reports the row as bad (dataset, row, file, reason) instead of crashing.

``pre_resize`` is vision.image_max_pixels / image_min_pixels: LLaMA-Factory's PIL pre-resize before the model's
own image processor (an image above max_pixels is scaled down, one below min_pixels up, keeping its aspect).
``to_png`` stores the result losslessly in the tokenized dataset, so training reads no file again.
"""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path

from llmpipe.data.media import MediaError


def describe(ref) -> str:
    """A short name of an image reference for messages."""
    if isinstance(ref, dict):
        ref = ref.get("path") or (f"<{len(ref.get('bytes') or b'')} bytes>" if ref.get("bytes") else ref)
    if isinstance(ref, (bytes, bytearray)):
        return f"<{len(ref)} bytes>"
    s = str(ref)
    return s[:40] + "..." if s.startswith("data:") and len(s) > 40 else s


def _bytes_of(ref, root: str | Path | None, kind: str = "image") -> bytes:
    if isinstance(ref, dict):
        if ref.get("bytes"):
            return bytes(ref["bytes"])
        ref = ref.get("path") or ref.get("url") or ref.get("image")
    if isinstance(ref, (bytes, bytearray)):
        return bytes(ref)
    if not isinstance(ref, str) or not ref:
        raise MediaError(f"{kind} entry {ref!r} is not a path, a data URL, bytes or a {{'path'|'bytes'}} dict")
    if ref.startswith("data:"):
        head, _, payload = ref.partition(",")
        if ";base64" not in head:
            raise MediaError(f"{kind} {describe(ref)}: only base64 data URLs are supported")
        try:
            return base64.b64decode(payload, validate=False)
        except ValueError as e:
            raise MediaError(f"{kind} {describe(ref)}: bad base64 ({e})") from None
    if "://" in ref:
        raise MediaError(f"{kind} {ref!r}: remote URLs are not fetched (llmpipe runs offline); download it and "
                         "give a local path")
    path = Path(ref).expanduser()
    if not path.is_absolute() and root is not None:
        path = Path(root).expanduser() / path
    try:
        return path.read_bytes()
    except OSError as e:
        raise MediaError(f"{kind} file {ref!r} cannot be read ({e.strerror or e}; looked in "
                         f"data.media_dir={str(root)!r})") from None


def open_image(ref, root: str | Path | None = None):
    """The image ``ref`` as an RGB PIL image; MediaError naming the file and the reason otherwise."""
    from PIL import Image, UnidentifiedImageError

    data = _bytes_of(ref, root)
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise MediaError(f"image {describe(ref)} is not a readable image ({type(e).__name__}: {e})") from None
    return img.convert("RGB")


def pre_resize(img, max_pixels: int | None, min_pixels: int | None):
    """LLaMA-Factory's pre-resize: scale so that width*height <= max_pixels, then >= min_pixels."""
    from PIL import Image

    w, h = img.size
    if max_pixels and w * h > max_pixels:
        f = math.sqrt(max_pixels / (w * h))
        img = img.resize((max(1, int(w * f)), max(1, int(h * f))), Image.Resampling.BICUBIC)
    w, h = img.size
    if min_pixels and w * h < min_pixels:
        f = math.sqrt(min_pixels / (w * h))
        img = img.resize((max(1, math.ceil(w * f)), max(1, math.ceil(h * f))), Image.Resampling.BICUBIC)
    return img


def to_png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def from_png(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")
