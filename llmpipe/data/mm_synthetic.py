"""Deterministic generator of llmpipe's bundled image data (LLaMA-Factory's multimodal format).

    python -m llmpipe.data.synthetic --out data      (writes these files too)

``vlm_colours`` / ``vlm_colours_eval`` (held out, other seeds): a small image of one shape (circle, square or
triangle, anywhere, of any size, on a white background) in one of four colours (red, green, blue, black, each
jittered), and the same question for every row, so the answer depends on the image alone: chance is 25 %.
Rows are ``{"messages": [...], "images": [...]}`` with an ``<image>`` placeholder; the images are embedded as
PNG data URLs (no binary files in the repository). ``vlm_colours_sharegpt`` holds the same training rows in
sharegpt form (``conversations`` with from/value). Needs Pillow (the ``multimodal`` extra).
"""
from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

SEED = 4321
SIZE = 56   # 56x56: 4 visual tokens for builtin:tiny_vl
# one dominant channel each, or none (black): a mixture such as yellow (red + green) is much slower to tell from
# red for a tiny model (measured: red and yellow stayed confused after 80 steps)
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "black": (25, 25, 25)}
SHAPES = ("circle", "square", "triangle")
QUESTION = "<image>What colour is the shape?"
N_TRAIN, N_EVAL = 256, 64
INFO = {
    "vlm_colours": {"file_name": "vlm_colours.json", "formatting": "sharegpt",
                    "columns": {"messages": "messages", "images": "images"},
                    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant"}},
    "vlm_colours_eval": {"file_name": "vlm_colours_eval.json", "formatting": "sharegpt",
                         "columns": {"messages": "messages", "images": "images"},
                         "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                  "assistant_tag": "assistant"}},
    "vlm_colours_sharegpt": {"file_name": "vlm_colours_sharegpt.json", "formatting": "sharegpt",
                             "columns": {"messages": "conversations", "images": "images"}},
}


def draw(rng: random.Random, colour: str, shape: str, size: int = SIZE):
    """One image: ``shape`` in (jittered) ``colour`` at a random place and scale on white."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    rgb = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[colour])
    s = rng.randint(size // 2, size - 6)
    x, y = rng.randint(2, size - s - 2), rng.randint(2, size - s - 2)
    if shape == "circle":
        d.ellipse([x, y, x + s, y + s], fill=rgb)
    elif shape == "square":
        d.rectangle([x, y, x + s, y + s], fill=rgb)
    else:
        d.polygon([(x + s // 2, y), (x, y + s), (x + s, y + s)], fill=rgb)
    return img


def data_url(img) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def rows(n: int, seed: str) -> list[dict]:
    rng = random.Random(f"{SEED}:{seed}")
    out = []
    names = sorted(COLOURS)
    for i in range(n):
        colour, shape = names[i % len(names)], rng.choice(SHAPES)
        out.append({"messages": [{"role": "user", "content": QUESTION},
                                 {"role": "assistant", "content": colour}],
                    "images": [data_url(draw(rng, colour, shape))]})
    rng.shuffle(out)
    return out


def sharegpt(rs: list[dict]) -> list[dict]:
    who = {"user": "human", "assistant": "gpt"}
    return [{"conversations": [{"from": who[m["role"]], "value": m["content"]} for m in r["messages"]],
             "images": r["images"]} for r in rs]


def write_all(out: str | Path) -> list[Path]:
    out = Path(out)
    train = rows(N_TRAIN, "train")
    files = {"vlm_colours.json": train, "vlm_colours_eval.json": rows(N_EVAL, "eval"),
             "vlm_colours_sharegpt.json": sharegpt(train[:32])}
    written = []
    for name, rs in files.items():
        p = out / name
        p.write_text("[\n" + ",\n".join(json.dumps(r) for r in rs) + "\n]\n", encoding="utf-8")
        written.append(p)
    return written
