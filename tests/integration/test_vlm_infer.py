"""Inference and export of a vision-language model, on the tiny VLM that +recipe=vlm_demo trains (the run
shared with test_vlm.py, vlm_support.trained_demo): predict and evaluate read the held-out images; chat's
/image and the OpenAI-compatible server's image_url parts give the model the picture, and its answers name
the colour; the server refuses remote URLs, local files (not allowed), too many / too large images and
corrupt ones with a 400 and keeps serving; a second export, legacy .bin format in several shards, carries the
image processor and the chat template and reloads in a fresh process with transformers' own classes."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from serve_support import post_chat
from vlm_support import trained_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return trained_demo(tmp_path_factory)


def eval_rows(n: int | None = None) -> list[dict]:
    from llmpipe.resources import folder

    rows = json.loads((folder("data") / "vlm_colours_eval.json").read_text())
    return rows[:n] if n else rows


def llmpipe(demo, *overrides: str) -> subprocess.CompletedProcess:
    _, cwd, store = demo
    env = {**os.environ, "LLMPIPE_CACHE": str(store), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "llmpipe", "+recipe=vlm_demo", *overrides], cwd=cwd, env=env,
                          check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"STDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
    return proc


def png_of(ref) -> bytes:
    from llmpipe.data.mm_media import open_image, to_png

    return to_png(open_image(ref))


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_predict_and_evaluate_read_the_images(demo):
    _, _, store = demo
    proc = llmpipe(demo, "train.do_predict=true", "train.predict_with_generate=true", "train.do_eval=true",
                   "generate.max_new_tokens=4", "run.sample=true")
    # run.sample prompts the base and the trained model with the held-out images too (as predict does)
    found = re.search(r"held-out accuracy: (\d+)% before -> (\d+)% after training \(exact match of greedy answers, "
                      r"(\d+) examples\)", proc.stdout)
    assert found, proc.stdout[-3000:]
    before, after, n = map(int, found.groups())
    print(f"run.sample: held-out exact match {before}% before -> {after}% after ({n} examples)")
    assert n == 64 and after >= 75 and after > before
    (pred,) = (store / "predict").iterdir()
    rows = [json.loads(line) for line in (pred / "generated_predictions.jsonl").read_text().splitlines()]
    truth = [r["messages"][1]["content"] for r in eval_rows()]
    assert [r["label"] for r in rows] == truth
    right = sum(r["predict"].strip() == r["label"] for r in rows)
    print(f"predict: {right}/{len(rows)} held-out colours named from the image")
    assert right >= 0.75 * len(rows), [(r["predict"], r["label"]) for r in rows]
    assert "<|image_pad|>" in rows[0]["prompt"]
    (ev,) = (store / "evaluate").iterdir()
    found = json.loads((ev / "eval_results.json").read_text())
    (train,) = (store / "train").iterdir()   # one training: the extra flags re-ran nothing upstream
    during = json.loads((train / "metrics.json").read_text())
    print(f"evaluate: eval_loss {found['eval_loss']:.4f} (train stage: {during['eval_loss_initial']:.4f} before, "
          f"{during['eval_loss']:.4f} after)")
    assert found["eval_samples"] == 64
    assert abs(found["eval_loss"] - during["eval_loss"]) < 0.02   # the train stage's eval_loss, on the same rows
    assert found["eval_loss"] < during["eval_loss_initial"] / 2   # and it is the trained model's
    assert len(list((store / "load").iterdir())) == 1   # nothing upstream re-ran (test_vlm.py reads the same store)


@pytest.fixture(scope="module")
def session(demo):
    """The real chat/serve session on the trained result (the recipe's export), opened in-process once."""
    _, cwd, store = demo
    from llmpipe.interactive import open_session

    saved_cwd, saved_env = os.getcwd(), os.environ.get("LLMPIPE_CACHE")
    os.chdir(cwd)
    os.environ["LLMPIPE_CACHE"] = str(store)
    try:
        s = open_session(["+recipe=vlm_demo", "generate.max_new_tokens=4", "serve.max_images=2",
                          "serve.max_image_bytes=6000", "serve.max_image_pixels=40000"], "test")
    finally:
        os.chdir(saved_cwd)
        os.environ.pop("LLMPIPE_CACHE") if saved_env is None else os.environ.update(LLMPIPE_CACHE=saved_env)
    yield s
    s.backend.close()


def test_chat_takes_an_image_with_the_image_command(session, tmp_path, capsys):
    from llmpipe import chat
    from llmpipe.infer.generation import from_config

    assert session.vision is not None and "exported" in session.ref.origin
    rows = eval_rows(4)
    lines = []
    for k, r in enumerate(rows):
        path = tmp_path / f"{k}.png"
        path.write_bytes(png_of(r["images"][0]))
        lines += ["/clear", f"/image {path}", "What colour is the shape?"]
    lines += ["/image /nonexistent.png", "/exit"]
    it = iter(lines)
    assert chat.repl(session, from_config(session.obj), read=lambda _: next(it)) == 0
    out = capsys.readouterr().out
    answers = [line.removeprefix("Assistant: ").strip() for line in out.splitlines() if line.startswith("Assistant:")]
    truth = [r["messages"][1]["content"] for r in rows]
    assert len(answers) == 4 and sum(a == t for a, t in zip(answers, truth)) >= 3, (answers, truth)
    assert "image 56x56 attached to your next message" in out and "cannot be read" in out


def _ask(url: str, *urls: str, text: str = "What colour is the shape?", **kw):
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls] + [{"type": "text", "text": text}]
    return post_chat(url, {"messages": [{"role": "user", "content": parts}], "temperature": 0, **kw})


def test_the_server_answers_from_image_url_parts_and_refuses_bad_images(session, tmp_path):
    from PIL import Image

    from llmpipe.serve import App, make_server

    lines: list[str] = []
    server = make_server(App(session, log=lines.append), "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.address[1]}"
    try:
        rows = eval_rows(4)
        truth = [r["messages"][1]["content"] for r in rows]
        answers = []
        for r in rows:
            status, body = _ask(url, data_url(png_of(r["images"][0])))
            assert status == 200, body
            answers.append(body["choices"][0]["message"]["content"].strip())
        assert sum(a == t for a, t in zip(answers, truth)) >= 3, (answers, truth)

        local = tmp_path / "red.png"
        local.write_bytes(png_of(rows[0]["images"][0]))
        noise = Image.frombytes("RGB", (60, 60), os.urandom(60 * 60 * 3))   # incompressible
        buf = io.BytesIO()
        noise.save(buf, format="PNG")
        big = io.BytesIO()
        Image.new("RGB", (250, 250), (0, 0, 255)).save(big, format="PNG")
        good = data_url(png_of(rows[0]["images"][0]))
        bad = {
            "remote": ((("https://example.com/red.png",), {}), "remote image URLs are not fetched"),
            "local": (((str(local),), {}), "allow_local_images=true"),
            "file": (((f"file://{local}",), {}), "allow_local_images=true"),
            "count": (((good, good, good), {"text": "Which colours?"}), "max_images=2"),
            "bytes": (((data_url(buf.getvalue()),), {}), "max_image_bytes=6000"),
            "pixels": (((data_url(big.getvalue()),), {}), "max_image_pixels=40000"),
            "corrupt": (((data_url(b"\x89PNG\r\n\x1a\n" + b"\0" * 64),), {}), "not a readable image"),
            "mismatch": (((good,), {"text": "<image><image>What colour?"}), "placeholder"),
        }
        assert len(buf.getvalue()) > 6000   # the noise image really is over the byte limit
        for name, ((urls, kw), words) in bad.items():
            status, body = _ask(url, *urls, **kw)
            assert status == 400 and words in body["error"]["message"], (name, status, body)
        status, body = _ask(url, good, stream=False)   # still serving, and right
        assert status == 200 and body["choices"][0]["message"]["content"].strip() == truth[0]
        assert body["usage"]["prompt_tokens"] > 4   # the visual tokens are in the prompt
    finally:
        server.close()


def test_a_legacy_sharded_export_keeps_processor_and_template_and_reloads_fresh(demo):
    _, cwd, _ = demo
    out = llmpipe(demo, "export.dir=exports/vlm_legacy", "export.legacy_format=true", "export.size=0.002")
    folder = cwd / "exports" / "vlm_legacy"
    shards = sorted(p.name for p in folder.glob("pytorch_model*.bin"))
    assert len(shards) >= 2 and (folder / "pytorch_model.bin.index.json").is_file(), (shards, out.stdout[-2000:])
    assert not list(folder.glob("*.safetensors"))
    assert (folder / "preprocessor_config.json").is_file()
    pngs = [png_of(r["images"][0]) for r in eval_rows(4)]
    script = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from transformers import AutoTokenizer
from vlm_support import generate_from_images
tok = AutoTokenizer.from_pretrained({str(folder)!r})
pngs = [bytes.fromhex(h) for h in {[p.hex() for p in pngs]!r}]
print(json.dumps({{"template": bool(tok.chat_template), "answers": generate_from_images({str(folder)!r}, pngs)}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    truth = [r["messages"][1]["content"] for r in eval_rows(4)]
    assert found["template"]
    assert sum(a.strip().startswith(t) for a, t in zip(found["answers"], truth)) >= 3, (found, truth)


@pytest.mark.gpu
def test_vllm_passes_the_images_and_agrees_with_huggingface(request):
    """vLLM with multi_modal_data (CUDA and the vllm package; skipped elsewhere): the exported tiny VLM answers
    the held-out images greedily as the Hugging Face backend does."""
    import importlib.util

    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM needs a CUDA GPU and the vllm package")
    from llmpipe.config.compose import compose
    from llmpipe.data.mm_media import from_png
    from llmpipe.infer.backends import load_prompter, open_backend
    from llmpipe.infer.generation import from_config
    from llmpipe.infer.mm_request import vision_for
    from llmpipe.infer.model_ref import ModelRef
    from llmpipe.pipeline.preflight import validate

    _, cwd, _ = request.getfixturevalue("demo")
    folder = str(cwd / "exports" / "vlm_demo")
    ref = ModelRef(folder, folder, origin="exported")
    rows = eval_rows(8)
    answers = {}
    for backend in ("huggingface", "vllm"):
        extra = ["infer.vllm_maxlen=512", "infer.vllm_gpu_util=0.3", "infer.vllm_enforce_eager=true"] \
            if backend == "vllm" else []
        obj, problems = validate(compose(["model=tiny_vl", "data.template=chatml", f"infer.backend={backend}",
                                          "generate.max_new_tokens=4", *extra]))
        assert obj is not None, problems
        obj = obj.obj
        prompter = load_prompter(ref.tokenizer, obj)
        vision = vision_for(ref, obj, prompter.tokenizer)
        prompts = [vision.encode(prompter, [{"role": "user", "content": "<image>What colour is the shape?"}], None,
                                 None, [from_png(png_of(r["images"][0]))]) for r in rows]
        engine = open_backend(obj, ref, prompter)
        try:
            answers[backend] = [c.text.strip() for c in engine.generate(prompts, from_config(obj))]
        finally:
            engine.close()
    truth = [r["messages"][1]["content"] for r in rows]
    assert answers["vllm"] == answers["huggingface"], answers
    assert sum(a == t for a, t in zip(answers["vllm"], truth)) >= 6, (answers, truth)
