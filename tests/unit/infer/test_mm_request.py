"""Images in requests without a model: what the server accepts in image_url parts (llmpipe.infer.mm_request:
data URLs; local files only when allowed; never remote URLs; the byte, pixel and count limits; corrupt images),
how the request parser places them (llmpipe.infer.openai_api), a text-only model's 400 through the real HTTP
server (stand-in backend), chat's /image on a text-only model, and GPTQ export of a VLM refused pre-flight."""
from __future__ import annotations

import base64
import io
import json
import os
import sys

import pytest

from llmpipe.infer import openai_api as api
from llmpipe.infer.mm_request import ImagePolicy, request_image, request_images

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "integration"))


def png(w: int = 56, h: int = 56, colour=(200, 0, 0), noise: bool = False) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (w, h), colour)
    if noise:
        img = Image.frombytes("RGB", (w, h), os.urandom(w * h * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def refused(call, *words):
    with pytest.raises(api.ApiError) as e:
        call()
    assert e.value.status == 400, e.value.message
    for w in words:
        assert w in e.value.message, e.value.message
    return e.value.message


def test_data_urls_are_opened_and_every_limit_is_a_400():
    policy = ImagePolicy(max_images=2, max_bytes=4000, max_pixels=100 * 100)
    assert request_image(data_url(png()), 0, policy).size == (56, 56)
    refused(lambda: request_image("https://example.com/cat.png", 0, policy), "remote image URLs are not fetched")
    refused(lambda: request_image("http://10.0.0.1/x.png", 0, policy), "data URL")
    refused(lambda: request_image(data_url(png(80, 80, noise=True)), 1, policy), "image 1", "max_image_bytes=4000")
    refused(lambda: request_image(data_url(png(120, 120)), 0, policy), "120x120", "max_image_pixels=10000")
    refused(lambda: request_image(data_url(b"\x89PNG\r\n\x1a\nnot really a png"), 0, policy), "not a readable image")
    refused(lambda: request_image("data:image/png;base64,@@@@", 0, policy), "not valid base64")
    refused(lambda: request_image("data:image/png,rawbytes", 0, policy), "base64 data URLs")
    refused(lambda: request_images([data_url(png())] * 3, policy), "3 images", "max_images=2")
    assert len(request_images([data_url(png())] * 2, policy)) == 2


def test_local_files_only_when_allowed(tmp_path):
    path = tmp_path / "red.png"
    path.write_bytes(png())
    for url in (str(path), f"file://{path}"):
        refused(lambda url=url: request_image(url, 0, ImagePolicy()), "allow_local_images=true")
        assert request_image(url, 0, ImagePolicy(allow_local=True)).size == (56, 56)
    refused(lambda: request_image(str(tmp_path / "none.png"), 0, ImagePolicy(allow_local=True)), "cannot be read")
    big = tmp_path / "big.png"
    big.write_bytes(png(90, 90, noise=True))
    refused(lambda: request_image(str(big), 0, ImagePolicy(max_bytes=1000, allow_local=True)), "max_image_bytes")


def test_image_parts_become_placeholders_in_user_turns_only():
    url = data_url(png())
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                      {"type": "text", "text": "What colour?"},
                                                      {"type": "image_url", "image_url": {"url": "x.png"}}]}]}
    req = api.parse_chat_request(json.dumps(body).encode(), model_id="m", max_tokens_limit=8)
    assert req.messages == [{"role": "user", "content": "<image>What colour?<image>"}]
    assert req.images == [url, "x.png"]
    text_only = api.parse_chat_request(json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
                                       model_id="m", max_tokens_limit=8)
    assert text_only.images == []
    bad = [{"role": "user", "content": "a"}, {"role": "assistant", "content": [{"type": "image_url",
                                                                                "image_url": {"url": url}}]},
           {"role": "user", "content": "b"}]
    refused(lambda: api.parse_chat_request(json.dumps({"messages": bad}).encode(), model_id="m", max_tokens_limit=8),
            "user messages only")
    detail = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url, "detail": "high"}}]}]
    refused(lambda: api.parse_chat_request(json.dumps({"messages": detail}).encode(), model_id="m",
                                           max_tokens_limit=8), "detail")


def test_a_text_only_model_answers_400_to_images_and_keeps_serving():
    from serve_support import post_chat, stub_server

    with stub_server(["serve.max_image_bytes=1000"]) as s:
        image = {"type": "image_url", "image_url": {"url": data_url(png())}}
        status, body = post_chat(s.url, {"messages": [{"role": "user", "content": [image]}]})
        assert status == 400 and "text-only" in body["error"]["message"]
        assert s.app.max_body == api.MAX_BODY   # no image allowance on a text-only model
        assert s.app.images.max_bytes == 1000
        status, body = post_chat(s.url, {"messages": [{"role": "user", "content": "hello?"}]})
        assert status == 200 and body["choices"][0]["message"]["content"] == "hello"


def test_chat_image_command_on_a_text_only_model(capsys):
    from types import SimpleNamespace

    from llmpipe import chat

    session = SimpleNamespace(vision=None, ref=SimpleNamespace(model="builtin:tiny"))
    lines = iter(["/image red.png", "/exit"])
    assert chat.repl(session, None, read=lambda _: next(lines)) == 0
    assert "/image: the model (builtin:tiny) is text-only: it takes no images" in capsys.readouterr().out


def test_gptq_export_of_a_vlm_is_refused_before_anything_runs():
    from llmpipe.config.compose import compose
    from llmpipe.config.environment import Environment
    from llmpipe.pipeline.preflight import validate

    overrides = ["model=tiny_vl", "data.dataset=vlm_colours", "data.template=chatml", "train.do_train=true",
                 "export.dir=/tmp/llmpipe-export-vlm-gptq", "export.quantization_bit=4",
                 "export.quantization_dataset=demo_pt"]
    env = Environment(gpu_count=0, available_packages=frozenset({"gptqmodel", "optimum"}))
    problems = validate(compose(overrides), env=env)[1]
    found = [p for p in problems if p.rule == "export-quant-vlm"]
    assert found and found[0].key == "export.quantization_bit" and found[0].value == 4
    assert "vision-language model builtin:tiny_vl (qwen2_vl)" in found[0].message
    assert not [p for p in validate(compose(overrides[:-2] + ["export.quantization_bit=null"]), env=env)[1]
                if p.rule == "export-quant-vlm"]
