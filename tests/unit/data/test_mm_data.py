"""Image rows for a vision-language model: LLaMA-Factory's messages + images format, every way of giving an image
(relative path under data.media_dir, {"path"} and {"bytes"} dicts, bytes, data URLs), bad images reported as bad
rows (dataset, row, file, reason), vision.image_max/min_pixels changing the number of visual tokens, and
cutoff_len counting them."""
from __future__ import annotations

import base64
import io
import json

import pytest

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from llmpipe.data.errors import DataError  # noqa: E402
from llmpipe.data.loader import build_datasets  # noqa: E402
from llmpipe.data.media import MediaError  # noqa: E402
from llmpipe.data.mm_media import open_image, pre_resize  # noqa: E402
from llmpipe.data.mm_tokenize import ImageTokens  # noqa: E402
from llmpipe.data.options import DataOptions  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    from llmpipe.models.tiny import build_tokenizer
    from llmpipe.models.vision_builtin import VISION_TOKENS

    t = build_tokenizer("builtin:tiny")
    t.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS)})
    return t


def tokens(max_pixels=None, min_pixels=None) -> ImageTokens:
    from llmpipe.models.vision_builtin import SPECS, image_processor

    return ImageTokens(image_processor(SPECS["builtin:tiny_vl"]), max_pixels=max_pixels, min_pixels=min_pixels)


def png(size=(112, 112), colour=(200, 20, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_every_way_of_giving_an_image_opens(tmp_path):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "a.png").write_bytes(png())
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    for ref in ("a.png", {"path": "a.png"}, {"bytes": png()}, png(), url, str(tmp_path / "media" / "a.png")):
        assert open_image(ref, tmp_path / "media").size == (112, 112)
    (tmp_path / "media" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(MediaError, match="broken.png.*not a readable image"):
        open_image("broken.png", tmp_path / "media")
    with pytest.raises(MediaError, match="missing.png.*cannot be read"):
        open_image("missing.png", tmp_path / "media")
    with pytest.raises(MediaError, match="remote URLs"):
        open_image("https://example.com/x.png", tmp_path)


def test_pixel_bounds_change_the_number_of_visual_tokens():
    img = Image.new("RGB", (112, 112))
    assert tokens().count(img) == 16                                   # 112x112: 8x8 patches, merged 2x2
    assert tokens().count(pre_resize(img, 56 * 56, None)) == 4          # vision.image_max_pixels=3136
    small = Image.new("RGB", (56, 56))
    assert tokens().count(pre_resize(small, None, 112 * 112)) == 16     # vision.image_min_pixels=12544
    assert tokens(max_pixels=56 * 56).prepare(png(), None)[1] == 4


def write_dataset(root, rows, name="mm", columns=None):
    (root / f"{name}.json").write_text(json.dumps(rows))
    info = {name: {"file_name": f"{name}.json", "formatting": "sharegpt",
                   "columns": columns or {"messages": "messages", "images": "images"},
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant"}}}
    (root / "dataset_info.json").write_text(json.dumps(info))


def chat(question="<image>What colour?", answer="red"):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_rows_train_with_expanded_tokens_and_bad_images_are_reported(tmp_path, tok):
    media = tmp_path / "pics"
    media.mkdir()
    (media / "red.png").write_bytes(png())
    (media / "bad.png").write_bytes(b"\x89PNG broken")
    rows = [{"messages": chat(), "images": ["red.png"]},
            {"messages": chat(), "images": [{"path": "bad.png"}]},
            {"messages": chat("<image> and <image>: same colour?", "yes"),
             "images": ["red.png", "data:image/png;base64," + base64.b64encode(png()).decode()]},
            {"messages": chat(), "images": ["nowhere.png"]},
            {"messages": chat("<image>What colour?"), "images": []}]
    write_dataset(tmp_path, rows)
    opts = DataOptions(stage="sft", dataset=("mm",), dataset_dir=str(tmp_path), media_dir=str(media),
                       template="chatml", cutoff_len=256)
    bundle = build_datasets(opts, tok, tokens())
    rep = bundle.report.datasets[0]
    assert (rep.total, rep.kept) == (5, 2)
    reasons = {e["row"]: e["reason"] for e in rep.examples}
    assert "bad.png" in reasons[1] and "not a readable image" in reasons[1]
    assert "nowhere.png" in reasons[3]
    assert "1 <image> placeholder but 0 images" in reasons[4]
    pad = tok.convert_tokens_to_ids("<|image_pad|>")
    first, second = bundle.train[0], bundle.train[1]
    assert sum(t == pad for t in first["input_ids"]) == 16 and len(first["images"]) == 1
    assert sum(t == pad for t in second["input_ids"]) == 32 and len(second["images"]) == 2
    assert all(lab == -100 for t, lab in zip(first["input_ids"], first["labels"]) if t == pad)
    assert tok.decode([t for t, lab in zip(first["input_ids"], first["labels"]) if lab != -100]).startswith("red")


def test_cutoff_len_counts_visual_tokens(tmp_path, tok):
    (tmp_path / "big.png").write_bytes(png((224, 224)))   # 64 visual tokens
    (tmp_path / "small.png").write_bytes(png((56, 56)))   # 4
    write_dataset(tmp_path, [{"messages": chat(), "images": ["big.png"]},
                             {"messages": chat(), "images": ["small.png"]}])
    opts = DataOptions(stage="sft", dataset=("mm",), dataset_dir=str(tmp_path), template="chatml", cutoff_len=48)
    bundle = build_datasets(opts, tok, tokens())
    rep = bundle.report.datasets[0]
    assert rep.kept == 1
    assert "64 visual tokens alone exceed cutoff_len=48" in rep.examples[0]["reason"]
    # the same data with vision.image_max_pixels small enough keeps both rows
    assert build_datasets(opts, tok, tokens(max_pixels=56 * 56)).report.datasets[0].kept == 2


def test_text_only_model_refuses_image_rows(tmp_path, tok):
    (tmp_path / "a.png").write_bytes(png())
    write_dataset(tmp_path, [{"messages": chat(), "images": ["a.png"]}])
    opts = DataOptions(stage="sft", dataset=("mm",), dataset_dir=str(tmp_path), template="chatml")
    with pytest.raises(DataError, match="text-only"):
        build_datasets(opts, tok)


def test_bundled_colours_data_is_image_only_signal():
    """The bundled learnable data asks the same question of every image; its answers are balanced."""
    from collections import Counter

    from llmpipe.data.registry import find_dataset
    from llmpipe.data.sources import read_rows

    for name in ("vlm_colours", "vlm_colours_eval"):
        rows = read_rows(find_dataset(name, "data"))
        assert {r["messages"][0]["content"] for r in rows} == {"<image>What colour is the shape?"}
        counts = Counter(r["messages"][1]["content"] for r in rows)
        assert set(counts) == {"red", "green", "blue", "black"} and len(set(counts.values())) == 1


@pytest.mark.parametrize("fmt", ["openai", "sharegpt_from_value"])
def test_openai_and_sharegpt_variants_train(tmp_path, tok, fmt):
    (tmp_path / "a.png").write_bytes(png())
    if fmt == "openai":
        rows = [{"messages": chat(), "images": ["a.png"]}]
        entry = {"file_name": "mm.json", "formatting": "openai",
                 "columns": {"messages": "messages", "images": "images"}}
    else:
        rows = [{"conversations": [{"from": "human", "value": "<image>What colour?"}, {"from": "gpt", "value": "red"}],
                 "images": "a.png"}]   # a single value is wrapped into a list
        entry = {"file_name": "mm.json", "formatting": "sharegpt",
                 "columns": {"messages": "conversations", "images": "images"}}
    (tmp_path / "mm.json").write_text(json.dumps(rows))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mm": entry}))
    opts = DataOptions(stage="sft", dataset=("mm",), dataset_dir=str(tmp_path), template="chatml")
    bundle = build_datasets(opts, tok, tokens())
    assert bundle.report.datasets[0].kept == 1 and len(bundle.train[0]["images"]) == 1
