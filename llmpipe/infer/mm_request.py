"""Images at inference time (chat, serve, predict): the prompt of a vision-language model, and the images of
a served request.

* :class:`Vision` turns a conversation whose user turns hold ``<image>`` placeholders, plus its images, into an
  :class:`ImagePrompt`: token ids with each placeholder expanded exactly as training expanded it
  (llmpipe.data.mm_plugins.ImageTokens: the pre-resize of ``vision.image_max_pixels`` /
  ``image_min_pixels``, the model's image processor, its family's expansion), carrying the pre-resized images.
  Backends give them to the model (:meth:`Vision.inputs`: ``pixel_values`` and the family's extras, e.g.
  ``image_grid_thw`` and ``mm_token_type_ids`` for Qwen2-VL; vLLM: ``multi_modal_data``).
* :func:`vision_for` finds a model's image processor (next to its tokenizer or its weights); None for a
  text-only model.
* :class:`ImagePolicy` and :func:`request_images` are what the server accepts in ``image_url`` parts
  (``serve.*``): base64 ``data:`` URLs; local files (a path or ``file://``) only with
  ``serve.allow_local_images=true``; never remote ``http(s)`` URLs (llmpipe runs offline); at most
  ``serve.max_images`` per request, ``serve.max_image_bytes`` each and ``serve.max_image_pixels`` each. Every
  refusal is a 400 :class:`~llmpipe.infer.openai_api.ApiError` naming the image and the limit.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmpipe.data.mm_tokenize import PLACEHOLDER
from llmpipe.infer.engine import InferenceError
from llmpipe.infer.openai_api import ApiError


class ImagePrompt(list):
    """The token ids of a prompt (a list, as every prompt is) with its images, pre-resized, in token order."""

    def __init__(self, ids, images):
        super().__init__(ids)
        self.images = list(images)


def images_of(prompt) -> list:
    """The images of a prompt ([] for a text prompt)."""
    return list(getattr(prompt, "images", None) or [])


def placeholders(messages: list[dict]) -> int:
    return sum(str(m.get("content") or "").count(PLACEHOLDER) for m in messages)


class Vision:
    """How a vision-language model takes images at inference: its family's image tokenization, as the run
    trained it (llmpipe.data.mm_plugins.ImageTokens, with the vision.* pre-resize), and its image token id."""

    def __init__(self, tokens, tokenizer):
        self.tokens = tokens
        ident = tokens.facts.get("image_token_id")
        self.image_token_id = int(ident) if ident is not None else tokenizer.convert_tokens_to_ids(tokens.image_token)

    def encode(self, prompter, messages: list[dict], system: str | None, tools: str | None, images: list
               ) -> ImagePrompt:
        """The prompt of ``messages`` (``<image>`` placeholders, one per image in order) with its images;
        ValueError when the placeholders and the images do not match."""
        from llmpipe.data.mm_media import pre_resize

        n = placeholders(messages)
        if n != len(images):
            raise ValueError(f"the conversation has {n} {PLACEHOLDER} placeholder(s) but {len(images)} image(s); "
                             f"the text {PLACEHOLDER} stands for an image on this model")
        ready = [pre_resize(img.convert("RGB"), self.tokens.max_pixels, self.tokens.min_pixels) for img in images]
        texts = []
        for k, img in enumerate(ready):
            try:
                texts.append(self.tokens.text_for(img)[0])
            except ValueError as e:   # e.g. an aspect ratio the image processor refuses
                raise ValueError(f"image {k}: the image processor refuses it ({e})") from None
        it = iter(texts)
        expanded = [{**m, "content": "".join(p if j == 0 else next(it) + p
                                             for j, p in enumerate(str(m["content"]).split(PLACEHOLDER)))}
                    if PLACEHOLDER in str(m.get("content") or "") else m for m in messages]
        return ImagePrompt(prompter.encode(expanded, system, tools), ready)

    def inputs(self, images: list, ids, device) -> dict:
        """The model's keyword arguments besides input_ids for ``images`` (every prompt's, in order) and the token
        ids ``ids``: pixel values, the family's extras and its image-token mask."""
        return {k: v.to(device) for k, v in self.tokens.batch_inputs(images, ids, self.image_token_id).items()}


def _is_vlm(folder: str) -> bool:
    try:
        return json.loads((Path(folder) / "config.json").read_text()).get("vision_config") is not None
    except (OSError, ValueError, AttributeError):
        return False


def vision_for(ref, obj: Any, tokenizer) -> Vision | None:
    """The image input of model ``ref`` (a ModelRef): its processor is saved next to its tokenizer or its
    weights. None for a text-only model; InferenceError for a vision-language model without one."""
    from llmpipe.data import mm_plugins

    for folder in (ref.tokenizer, ref.model):
        if Path(folder).is_dir():
            tokens = mm_plugins.load(folder, obj.vision.image_max_pixels, obj.vision.image_min_pixels)
            if tokens is not None:
                return Vision(tokens, tokenizer)
    if _is_vlm(ref.model):
        raise InferenceError(f"{ref.model} is a vision-language model but no image processor "
                             "(preprocessor_config.json) is saved next to it or its tokenizer")
    return None


def text_only(ref) -> str:
    return f"the model ({ref.model}) is text-only: it takes no images"


# ------------------------------------------------------------------------------------------------ serving
@dataclass(frozen=True)
class ImagePolicy:
    """What the server accepts in image_url parts (serve.*)."""
    max_images: int = 4
    max_bytes: int = 5 << 20
    max_pixels: int = 4096 * 4096
    allow_local: bool = False

    @classmethod
    def from_config(cls, serve: Any) -> ImagePolicy:
        return cls(int(serve.max_images), int(serve.max_image_bytes), int(serve.max_image_pixels),
                   bool(serve.allow_local_images))

    def body_bytes(self) -> int:
        """Request-body bytes the images may take (base64 is 4/3 of the bytes)."""
        return self.max_images * (self.max_bytes * 4 // 3 + 1024)


def _bad(i: int, message: str) -> ApiError:
    return ApiError(400, f"image {i}: {message}", "messages", "invalid_image")


def _data_url(url: str, i: int, policy: ImagePolicy) -> bytes:
    head, comma, payload = url.partition(",")
    if not comma or ";base64" not in head:
        raise _bad(i, "only base64 data URLs are accepted (data:image/png;base64,...)")
    if len(payload) * 3 // 4 > policy.max_bytes + 3:
        raise _bad(i, f"larger than serve.max_image_bytes={policy.max_bytes}")
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise _bad(i, f"the data URL is not valid base64 ({e})") from None


def _local(url: str, i: int, policy: ImagePolicy) -> bytes:
    if not policy.allow_local:
        raise _bad(i, "local image files are not read by this server (it was started without "
                      "serve.allow_local_images=true); send the image as a base64 data URL")
    path = Path(url.removeprefix("file://")).expanduser()
    try:
        if path.stat().st_size > policy.max_bytes:
            raise _bad(i, f"{path} is larger than serve.max_image_bytes={policy.max_bytes}")
        return path.read_bytes()
    except OSError as e:
        raise _bad(i, f"{path} cannot be read ({e.strerror or e})") from None


def request_image(url: str, i: int, policy: ImagePolicy):
    """The RGB image of image_url ``url`` (the request's ``i``-th image); a 400 ApiError when refused."""
    from PIL import Image

    from llmpipe.data.media import MediaError
    from llmpipe.data.mm_media import open_image

    if url.startswith("data:"):
        data = _data_url(url, i, policy)
    elif url.startswith("file://") or "://" not in url:
        data = _local(url, i, policy)
    else:
        raise _bad(i, f"remote image URLs are not fetched ({url.split('://')[0]}://...; llmpipe runs offline): send "
                      "the image as a base64 data URL")
    if len(data) > policy.max_bytes:
        raise _bad(i, f"{len(data)} bytes, more than serve.max_image_bytes={policy.max_bytes}")
    try:
        with Image.open(io.BytesIO(data)) as probe:   # the header only: the size before decoding any pixel
            w, h = probe.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:   # not an image, or a bomb
        raise _bad(i, f"not a readable image ({type(e).__name__}: {e})") from None
    if w * h > policy.max_pixels:
        raise _bad(i, f"{w}x{h} = {w * h} pixels, more than serve.max_image_pixels={policy.max_pixels}")
    try:
        return open_image(data)
    except MediaError as e:
        raise _bad(i, str(e)) from None


def request_images(urls: list[str], policy: ImagePolicy) -> list:
    if len(urls) > policy.max_images:
        raise ApiError(400, f"{len(urls)} images in one request; this server takes at most serve.max_images="
                            f"{policy.max_images}", "messages", "too_many_images")
    return [request_image(u, i, policy) for i, u in enumerate(urls)]


def image_prompt(app, req) -> ImagePrompt:
    """The prompt of served request ``req`` (llmpipe.infer.openai_api.ChatRequest) on the server ``app``: its
    images checked and opened under ``app.images``; a 400 when the served model is text-only."""
    if app.vision is None:
        ref = getattr(app.session, "ref", None)
        why = text_only(ref) if ref is not None else "the served model is text-only"
        raise ApiError(400, f"image_url parts need a vision-language model; {why}", "messages", "images_not_supported")
    images = request_images(req.images, app.images)
    return app.vision.encode(app.session.prompter, req.messages, req.system, req.tools, images)
