"""Multimodal columns (images / videos / audios): the row-level check.

For a dataset registered with ``columns.images`` (or videos / audios) every row must have as many media
entries as ``<image>`` (``<video>``, ``<audio>``) placeholders in its messages, and every local file must
exist under ``data.media_dir`` (default: ``data.dataset_dir``). Rows that fail are reported as bad rows.
Images are opened and tokenized for a vision-language model by llmpipe.data.mm_tokenize; a text-only model,
videos and audios are refused by the loader rather than trained on placeholder text (docs/multimodal.md).
"""
from __future__ import annotations

from pathlib import Path

MEDIA = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}
SINGULAR = {"images": "image", "videos": "video", "audios": "audio"}


class MediaError(ValueError):
    """A row whose media do not match its placeholders (reported as a bad row)."""


def _entries(value, col: str, col_kind: str = "") -> list:
    if value in (None, "", []):
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, list) and col_kind == "videos":   # a video given as its frames: a list of images
            out.append(_entries(v, col, "images") or [])
            continue
        if isinstance(v, dict) and v.get("bytes"):   # {"bytes": ...} (datasets.Image): checked when opened
            out.append(v)
            continue
        if isinstance(v, dict):  # {"path": ...} / {"url": ...}
            v = v.get("path") or v.get("url") or v.get("image")
        if isinstance(v, (bytes, bytearray)) and v:
            out.append(v)
            continue
        if not isinstance(v, str) or not v:
            raise MediaError(f"{col} column holds {type(v).__name__}, not a file path")
        out.append(v)
    return out


def check_media(row: dict, spec, messages: list[dict], media_root: str | Path | None) -> dict:
    """``{column: [paths]}`` of a row whose media match its placeholders; MediaError otherwise."""
    found = {}
    text = "\n".join(str(m.get("content") or "") for m in messages)
    root = Path(media_root).expanduser() if media_root else None
    for key, placeholder in MEDIA.items():
        col = spec.columns.get(key)
        if not col:
            continue
        paths = _entries(row.get(col), col, key)
        n = text.count(placeholder)
        if n != len(paths):
            raise MediaError(f"{n} {placeholder} placeholder{'s' * (n != 1)} but {len(paths)} "
                             f"{SINGULAR[key]}{'s' * (len(paths) != 1)} in column {col!r}")
        for p in (f for entry in paths for f in (entry if isinstance(entry, list) else [entry])):
            if not isinstance(p, str) or "://" in p or p.startswith("data:"):
                continue   # bytes, data URLs: decoded (and reported when broken) with the image
            full = Path(p).expanduser()
            full = full if full.is_absolute() or root is None else root / full
            if not full.exists():
                raise MediaError(f"{SINGULAR[key]} file {p!r} not found (looked in data.media_dir={str(root)!r})")
        if paths:
            found[key] = paths
    return found


def expand_placeholders(messages: list[dict], placeholder: str, expansions: list[str]) -> list[dict]:
    """``messages`` with each ``placeholder`` replaced, in order over the conversation, by the next of ``expansions``
    (the tokens one image, video or audio clip becomes)."""
    out, k = [], 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str) and placeholder in content:
            parts = content.split(placeholder)
            text = parts[0]
            for p in parts[1:]:
                text += expansions[k] + p
                k += 1
            m = {**m, "content": text}
        out.append(m)
    return out
