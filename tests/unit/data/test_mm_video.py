"""Video rows for a Qwen-VL-layout model (llmpipe.data.mm_video): every way of giving a video opens, vision.video_fps
and video_maxlen change the frames sampled, video_max/min_pixels act on each frame (and so on the video tokens),
the video pixels have the layout of transformers' Qwen2-VL video processor, and a corrupt or missing video, or
one whose tokens alone exceed cutoff_len, is a reported bad row (dataset, row, file, reason)."""
from __future__ import annotations

import base64
import json
import random
from types import SimpleNamespace

import pytest

pytest.importorskip("av")
pytest.importorskip("PIL")

from llmpipe.data.loader import build_datasets
from llmpipe.data.media import MediaError
from llmpipe.data.mm_synthetic_video import encode, frames
from llmpipe.data.mm_video import (
    VideoTokens,
    attach,
    decode,
    sample_indices,
    video_pixels,
)
from llmpipe.data.options import DataOptions


@pytest.fixture(scope="module")
def processor():
    from llmpipe.models.vision_builtin import SPECS, image_processor

    return image_processor(SPECS["builtin:tiny_vl"])


@pytest.fixture(scope="module")
def tok():
    from llmpipe.models.tiny import build_tokenizer
    from llmpipe.models.vision_builtin import VISION_TOKENS

    t = build_tokenizer("builtin:tiny")
    t.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS)})
    return t


@pytest.fixture(scope="module")
def clip():
    """8 frames at 4 fps (2 s) of 56x56."""
    return encode(frames(random.Random(0), "right"))


@pytest.fixture(scope="module")
def big_clip():
    """8 frames at 4 fps of 112x112 (16 tokens per pair of frames at the processor's bounds)."""
    return encode(frames(random.Random(1), "left", size=112))


def vision(**kw):
    base = {"video_fps": 2.0, "video_maxlen": 128, "video_max_pixels": 65536, "video_min_pixels": 256}
    return SimpleNamespace(**{**base, **kw})


def test_every_way_of_giving_a_video_opens(tmp_path, clip):
    (tmp_path / "v.mp4").write_bytes(clip)
    url = "data:video/mp4;base64," + base64.b64encode(clip).decode()
    for ref in ("v.mp4", {"path": "v.mp4"}, {"bytes": clip}, clip, url, str(tmp_path / "v.mp4")):
        got, duration = decode(ref, tmp_path)
        assert len(got) == 8 and got[0].size == (56, 56) and duration == pytest.approx(2.0)
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    with pytest.raises(MediaError, match="bad.mp4.*not a readable video"):
        decode("bad.mp4", tmp_path)
    with pytest.raises(MediaError, match="video file 'gone.mp4' cannot be read"):
        decode("gone.mp4", tmp_path)


def test_video_fps_and_maxlen_change_the_frames_sampled(processor, clip):
    # LLaMA-Factory's rule: min(frames, maxlen, floor(duration * fps)) evenly spaced, then paired (odd: last repeated)
    assert sample_indices(30, 3.0, 2.0, 128) == [0, 5, 11, 17, 23, 29]
    assert sample_indices(30, 3.0, 1.0, 128) == [0, 14, 29, 29]
    assert sample_indices(30, 3.0, 2.0, 4) == [0, 9, 19, 29]
    counts = {}
    for fps, maxlen in ((2.0, 128), (4.0, 128), (1.0, 128), (4.0, 4)):
        vt = VideoTokens(processor, fps=fps, maxlen=maxlen)
        got = vt.frames(clip)
        counts[(fps, maxlen)] = (len(got), vt.count(got))
    # 2 s clip of 8 frames, 4 tokens per pair of 56x56 frames
    assert counts == {(2.0, 128): (4, 8), (4.0, 128): (8, 16), (1.0, 128): (2, 4), (4.0, 4): (4, 8)}
    # the frames sampled are the evenly spaced ones: at fps 2, frames 0, 2, 4 and 7 of the clip
    every = decode(clip)[0]
    sampled = VideoTokens(processor, fps=2.0).frames(clip)
    assert [f.tobytes() == every[i].tobytes() for f, i in zip(sampled, (0, 2, 4, 7))] == [True] * 4


def test_video_max_and_min_pixels_act_on_each_frame(processor, clip, big_clip):
    default = VideoTokens(processor, fps=4.0)
    small = VideoTokens(processor, fps=4.0, max_pixels=56 * 56)
    big = default.frames(big_clip)
    assert {f.size for f in big} == {(112, 112)} and default.count(big) == 4 * 16
    shrunk = small.frames(big_clip)
    assert {f.size for f in shrunk} == {(56, 56)} and small.count(shrunk) == 4 * 4
    grown = VideoTokens(processor, fps=4.0, min_pixels=112 * 112).frames(clip)
    assert {f.size for f in grown} == {(112, 112)}
    px = video_pixels(processor, [shrunk, big])
    assert px["video_grid_thw"].tolist() == [[4, 4, 4], [4, 8, 8]]
    assert px["pixel_values_videos"].shape == (4 * 16 + 4 * 64, 3 * 2 * 14 * 14)


def test_video_pixels_have_the_image_layout_with_two_frames_per_temporal_patch(processor, clip):
    """A still video (the same frame twice) gives exactly the image processor's pixels for that frame: the image
    path copies one frame over the two temporal slots, the video path puts two frames there."""
    f = decode(clip)[0][0]
    image = processor(images=[f], return_tensors="pt")
    video = video_pixels(processor, [[f, f]])
    assert video["pixel_values_videos"].equal(image["pixel_values"])
    assert video["video_grid_thw"].tolist() == image["image_grid_thw"].tolist()
    moving = video_pixels(processor, [decode(clip)[0][:2]])["pixel_values_videos"]
    assert not moving.equal(video["pixel_values_videos"])


def write(root, rows):
    (root / "vids.json").write_text(json.dumps(rows))
    (root / "dataset_info.json").write_text(json.dumps({"vids": {
        "file_name": "vids.json", "formatting": "sharegpt", "columns": {"messages": "messages", "videos": "videos"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}))


def chat(answer="right", question="<video>Which way?"):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_video_rows_tokenize_and_bad_videos_are_reported(tmp_path, tok, processor, clip, big_clip):
    from llmpipe.data.mm_tokenize import ImageTokens

    media = tmp_path / "media"
    media.mkdir()
    (media / "a.mp4").write_bytes(clip)
    (media / "big.mp4").write_bytes(big_clip)
    (media / "broken.mp4").write_bytes(clip[: len(clip) // 3])
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    write(tmp_path, [{"messages": chat(), "videos": ["a.mp4"]},
                     {"messages": chat(), "videos": [{"path": "broken.mp4"}]},
                     {"messages": chat("left"), "videos": ["big.mp4"]},
                     {"messages": chat(), "videos": ["nowhere.mp4"]}])
    mm = ImageTokens(processor)
    attach(mm, tmp_path / "model", vision(video_fps=4.0))
    opts = DataOptions(stage="sft", dataset=("vids",), dataset_dir=str(tmp_path), media_dir=str(media),
                       template="chatml", cutoff_len=48)
    bundle = build_datasets(opts, tok, mm)
    rep = bundle.report.datasets[0]
    reasons = {e["row"]: e["reason"] for e in rep.examples}
    assert (rep.total, rep.kept) == (4, 1), reasons
    assert "broken.mp4" in reasons[1]
    assert "64 video tokens alone exceed cutoff_len=48" in reasons[2]
    assert "nowhere.mp4" in reasons[3]
    row = bundle.train[0]
    pad = tok.convert_tokens_to_ids("<|video_pad|>")
    assert sum(t == pad for t in row["input_ids"]) == 16 and len(row["videos"]) == 1 and len(row["videos"][0]) == 8
    assert all(lab == -100 for t, lab in zip(row["input_ids"], row["labels"]) if t == pad)
    # the same rows for a model whose family reads no videos here are refused, not trained as placeholder text
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "llava"}))
    attach(mm, tmp_path / "model", vision())
    from llmpipe.data.errors import DataError

    with pytest.raises(DataError, match="videos or audios this run cannot read"):
        build_datasets(opts, tok, mm)


def test_bundled_motion_data_is_a_video_only_signal():
    """The bundled video data asks the same question of every clip; its answers (left/right) are balanced."""
    from collections import Counter

    from llmpipe.data.registry import find_dataset
    from llmpipe.data.sources import read_rows

    for name, n in (("vlm_motion", 64), ("vlm_motion_eval", 16)):
        rows = read_rows(find_dataset(name, "data"))
        assert len(rows) == n
        assert {r["messages"][0]["content"] for r in rows} == {"<video>Which way does the square move?"}
        assert Counter(r["messages"][1]["content"] for r in rows) == {"left": n // 2, "right": n // 2}
    got, duration = decode(rows[0]["videos"][0])
    assert len(got) == 8 and duration == pytest.approx(2.0)
