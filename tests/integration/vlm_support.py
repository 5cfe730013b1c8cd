"""Helpers of the vision-language tests: held-out accuracy of a tiny VLM on the published image rows."""
from __future__ import annotations

from pathlib import Path

COLOURS = ("black", "blue", "green", "red")


def trained_demo(tmp_path_factory):
    """``python -m llmpipe +recipe=vlm_demo`` run once per test session, shared by the test files that use it
    (under pytest-xdist too: the first worker runs it under a file lock, the others find it done). (stdout, the
    folder it ran in (exports/vlm_demo is there), the store)."""
    import os
    import subprocess
    import sys
    import time

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "vlm_demo_shared"
    root.mkdir(parents=True, exist_ok=True)
    cwd, store, log = root / "run", root / "store", root / "stdout.txt"
    with FileLock(str(root / "lock")):
        if not log.is_file():
            cwd.mkdir(exist_ok=True)
            env = {**os.environ, "LLMPIPE_CACHE": str(store), "PYTHONUNBUFFERED": "1"}
            t0 = time.time()
            proc = subprocess.run([sys.executable, "-m", "llmpipe", "+recipe=vlm_demo"], cwd=cwd, env=env,
                                  check=False, capture_output=True, text=True, timeout=1800)
            assert proc.returncode == 0, f"STDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
            print(f"\nvlm_demo: {time.time() - t0:.0f}s")
            log.write_text(proc.stdout)
    return log.read_text(), cwd, store


def white_png(png: bytes) -> bytes:
    """A blank (white) image of the same size as ``png``: the same visual tokens, no information."""
    from PIL import Image

    from llmpipe.data.mm_media import from_png, to_png

    return to_png(Image.new("RGB", from_png(png).size, (255, 255, 255)))


def accuracy(model, load_dir: Path, blank: bool = False) -> float:
    """Share of the load stage's eval rows whose answer the model scores highest among the four colours (sum of
    the answer tokens' log-probabilities, teacher-forced); ``blank``: every image replaced by a white one."""
    import torch
    from transformers import AutoTokenizer

    from llmpipe.data.published import open_published
    from llmpipe.models.vision import load_image_processor
    from llmpipe.training.collators import MultimodalCollator

    tok = AutoTokenizer.from_pretrained(str(load_dir / "tokenizer"))
    collate = MultimodalCollator(tok, load_image_processor(load_dir / "tokenizer"))
    _, ev = open_published(load_dir)
    answers = [tok(c + tok.eos_token, add_special_tokens=False)["input_ids"] for c in COLOURS]
    right = 0
    model.eval()
    for start in range(0, len(ev), 16):
        rows = [dict(ev[i]) for i in range(start, min(len(ev), start + 16))]
        if blank:
            rows = [{**r, "images": [white_png(b) for b in r["images"]]} for r in rows]
        scores, truth = [], []
        for r in rows:
            pos = next(k for k, lab in enumerate(r["labels"]) if lab != -100)
            truth.append(next(k for k, a in enumerate(answers) if r["input_ids"][pos:pos + len(a)] == a))
        for a in answers:
            feats = []
            for r in rows:
                pos = next(k for k, lab in enumerate(r["labels"]) if lab != -100)
                ids = list(r["input_ids"][:pos]) + a
                feats.append({"input_ids": ids, "labels": [-100] * pos + a, "attention_mask": [1] * len(ids),
                              "images": r["images"]})
            batch = collate(feats)
            labels = batch.pop("labels")
            with torch.no_grad():
                logp = torch.log_softmax(model(**batch).logits[:, :-1].float(), -1)
            tgt = labels[:, 1:]
            picked = logp.gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1) * (tgt != -100)
            scores.append(picked.sum(-1))
        pred = torch.stack(scores, -1).argmax(-1).tolist()
        right += sum(int(p == t) for p, t in zip(pred, truth))
    return right / len(ev)


def generate_from_images(folder: Path, pngs: list[bytes], question: str = "<image>What colour is the shape?"
                         ) -> list[str]:
    """Reload an exported VLM with transformers' own classes (model, tokenizer, image processor: no llmpipe code)
    and answer ``question`` about each image greedily."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    from llmpipe.data.mm_media import from_png

    model = AutoModelForImageTextToText.from_pretrained(str(folder)).eval()
    tok = AutoTokenizer.from_pretrained(str(folder))
    proc = AutoImageProcessor.from_pretrained(str(folder))
    out = []
    for png in pngs:
        px = proc(images=[from_png(png)], return_tensors="pt")
        n = int(px["image_grid_thw"].prod()) // proc.merge_size ** 2
        text = question.replace("<image>", "<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>")
        prompt = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        mm = (ids == model.config.image_token_id).long()
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=mm,
                                 pixel_values=px["pixel_values"], image_grid_thw=px["image_grid_thw"],
                                 max_new_tokens=4, do_sample=False)
        out.append(tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
    return out


def two_steps(model, batch, lr: float = 1e-2) -> list[float]:
    """2 AdamW steps of ``model`` (its trainable parameters) on ``batch``: the losses before each step and after the
    second; asserts they are finite and that the loss fell."""
    import math

    import torch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    model.train()
    for _ in range(2):
        loss = model(**batch).loss
        losses.append(float(loss))
        loss.backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        losses.append(float(model(**batch).loss))
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0], losses
    return losses
