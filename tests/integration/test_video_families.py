"""Videos on every family that reads them (llmpipe.data.mm_video, llmpipe.data.mm_video_layouts), on the tiny random
instances of llmpipe.models.vlm_zoo, in process: the processor published as the load stage does, the bundled
vlm_motion clips tokenized by the real loader, the batch collated by the train stage's collator, and checked
against transformers' own processor code where it can run here (the token layout, Qwen2.5-VL's
second_per_grid_ts, Qwen3-VL's timestamps, LLaVA-NeXT-Video's count); the timing inputs reach the model (they
change its positions / logits); 2 LoRA steps per family lower the batch loss; LLaVA-NeXT-Video (images and videos)
is merged, reloaded in a fresh process with transformers' classes and generates from a video. Frame-list videos
and the vision.video_* flags are checked for every video family, and the flags are refused, naming the family, on
a family that reads no videos."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from types import SimpleNamespace

import pytest
import test_methods
from vlm_support import two_steps

torch = pytest.importorskip("torch")
pytest.importorskip("av")
pytestmark = pytest.mark.slow

FAMILIES = {"builtin:tiny-qwen2.5-vl": "qwen2_vl", "builtin:tiny-qwen3-vl": "qwen3_vl_nothink",
            "builtin:tiny-llava-next-video": "llava_next_video"}   # name -> LLaMA-Factory's template
store = test_methods.store   # a fixture: a store that shares the built-in models of the session


def vision(**kw):
    base = {"video_fps": 2.0, "video_maxlen": 128, "video_max_pixels": 65536, "video_min_pixels": 256}
    return SimpleNamespace(**{**base, **kw})


@pytest.fixture(scope="module")
def train_cfg():
    """The vlm_demo recipe's training settings (LoRA r4 on the language model, the projector trained whole): what
    the train stage builds every family's model with."""
    from llmpipe.config.compose import compose
    from llmpipe.config.typed import typed
    from llmpipe.pipeline.preflight import validate

    validated, problems = validate(compose(["+recipe=vlm_demo", "lora.rank=4"]))
    assert not problems, [p.render() for p in problems]
    return typed(validated.cfg)


@pytest.fixture(scope="module")
def published(store):
    """name -> (model folder, its processor folder, tokenizer, ImageTokens). The zoo folder carries the processor as
    the load stage publishes it (publish_processor: the image processor and llmpipe-mm.json)."""
    from transformers import AutoTokenizer

    from llmpipe.data import mm_plugins
    from llmpipe.models import vlm_zoo

    out = {}
    for name in FAMILIES:
        source = vlm_zoo.ensure(name, store)
        out[name] = (source, source, AutoTokenizer.from_pretrained(str(source)), mm_plugins.load(source))
    return out


def motion_rows(name, published, n=2, **flags):
    """The first ``n`` vlm_motion rows tokenized for ``name`` by the loader, with the vision.video_* ``flags``."""
    from llmpipe.data.loader import build_datasets
    from llmpipe.data.mm_video import attach
    from llmpipe.data.options import DataOptions
    from llmpipe.resources import folder

    source, _, tok, mm = published[name]
    attach(mm, source, vision(**flags))
    opts = DataOptions(stage="sft", dataset=("vlm_motion",), dataset_dir=str(folder("data")),
                       template=FAMILIES[name], cutoff_len=512, max_samples=n)
    return build_datasets(opts, tok, mm).train


def collate(name, published, rows):
    from llmpipe.training.collators import MultimodalCollator

    _, _, tok, mm = published[name]
    return MultimodalCollator(tok, mm)([dict(r) for r in rows])


def trained(name, published, cfg, batch):
    """The model as the train stage builds it (LoRA on the language model, the projector whole) after 2 AdamW steps
    on ``batch`` that lower its loss."""
    from llmpipe.models.trainable import build

    model = build(str(published[name][0]), cfg, log=lambda m: None)
    two_steps(model, batch)
    return model


def test_qwen2_5_vl_videos_carry_second_per_grid_ts_to_the_model(published, train_cfg):
    from transformers.video_utils import VideoMetadata

    from llmpipe.data.mm_video import sample_indices

    name = "builtin:tiny-qwen2.5-vl"
    tok = published[name][2]
    slow, fast = motion_rows(name, published, video_fps=2.0), motion_rows(name, published, video_fps=4.0)
    pad = tok.convert_tokens_to_ids("<|video_pad|>")
    # 8 frames of 56x56 over 2 s: video_fps=2 samples 4 (2 temporal patches of 4 tokens), video_fps=4 all 8
    assert [len(slow[0]["videos"][0]), sum(t == pad for t in slow[0]["input_ids"])] == [4, 8]
    assert [len(fast[0]["videos"][0]), sum(t == pad for t in fast[0]["input_ids"])] == [8, 16]
    batch = collate(name, published, slow)
    # transformers' Qwen2_5_VLProcessor: temporal_patch_size / VideoMetadata.sampled_fps of the sampled frames
    meta = VideoMetadata(total_num_frames=8, fps=4.0, frames_indices=sample_indices(8, 2.0, 2.0, 128, 1))
    assert batch["second_per_grid_ts"].tolist() == [2 / meta.sampled_fps] * 2 == [1.0, 1.0]
    assert collate(name, published, fast)["second_per_grid_ts"].tolist() == [0.5, 0.5]
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4]] * 2
    assert int((batch["mm_token_type_ids"] == 2).sum()) == 16 and "pixel_values" not in batch
    model = trained(name, published, train_cfg, batch)
    # the timing input reaches the model: other second_per_grid_ts -> other temporal positions, other logits
    core = model.base_model.model.model
    args = {k: batch[k] for k in ("input_ids", "mm_token_type_ids", "video_grid_thw", "attention_mask")}
    pos_1s = core.get_rope_index(**args, second_per_grid_ts=batch["second_per_grid_ts"])[0]
    pos_4s = core.get_rope_index(**args, second_per_grid_ts=4 * batch["second_per_grid_ts"])[0]
    video = batch["input_ids"][0] == pad
    t_1s, t_4s = (sorted(set(p[0, 0][video].tolist())) for p in (pos_1s, pos_4s))
    assert t_1s[0] == t_4s[0] and (t_1s[1] - t_1s[0], t_4s[1] - t_4s[0]) == (4, 16)   # tokens_per_second 4 x 1 s, x 4 s
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        a = model(**inputs).logits
        b = model(**{**inputs, "second_per_grid_ts": 4 * batch["second_per_grid_ts"]}).logits
    assert not torch.allclose(a, b)


def test_qwen3_vl_videos_get_the_processors_timestamps(published, train_cfg):
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
    from transformers.video_utils import VideoMetadata

    from llmpipe.data.mm_video import sample_indices

    name = "builtin:tiny-qwen3-vl"
    tok = published[name][2]
    for fps, want in ((2.0, ["<0.2 seconds>", "<1.4 seconds>"]),
                      (4.0, ["<0.1 seconds>", "<0.6 seconds>", "<1.1 seconds>", "<1.6 seconds>"])):
        rows = motion_rows(name, published, video_fps=fps)
        text = tok.decode(rows[0]["input_ids"])
        # Qwen3VLProcessor.replace_video_token itself (its attributes given by hand: it cannot be built here)
        meta = VideoMetadata(total_num_frames=8, fps=4.0, frames_indices=sample_indices(8, 2.0, fps, 128, 1))
        grid = torch.tensor([[len(want), 4, 4]])
        proc = SimpleNamespace(video_processor=SimpleNamespace(merge_size=2, temporal_patch_size=2),
                               vision_start_token="<|vision_start|>", vision_end_token="<|vision_end|>",
                               video_token="<|video_pad|>")
        proc._calculate_timestamps = lambda *a, p=proc: Qwen3VLProcessor._calculate_timestamps(p, *a)
        theirs = Qwen3VLProcessor.replace_video_token(proc, {"video_grid_thw": grid, "video_metadata": [meta]}, 0)
        assert theirs in text and [f"<{s}" for s in theirs.split("<")[1:] if "seconds" in s] == want
    batch = collate(name, published, rows)
    assert batch["video_grid_thw"].tolist() == [[4, 4, 4]] * 2 and int((batch["mm_token_type_ids"] == 2).sum()) == 32
    trained(name, published, train_cfg, batch)


RELOAD = r'''
import json, sys, torch
from transformers import AutoModelForImageTextToText, AutoTokenizer, AutoImageProcessor
folder, batch_file = sys.argv[1:]
model = AutoModelForImageTextToText.from_pretrained(folder).eval()
AutoTokenizer.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)
batch = torch.load(batch_file)
with torch.no_grad():
    logits = model(**batch).logits
    gen = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
torch.save(logits, batch_file + ".logits")
print(json.dumps({"class": type(model).__name__, "new_tokens": gen.shape[1] - batch["input_ids"].shape[1]}))
'''


def test_llava_next_video_trains_on_videos_and_images_merges_reloads_and_generates(published, train_cfg, tmp_path):
    from transformers.models.llava_next_video.processing_llava_next_video import (
        LlavaNextVideoProcessor,
    )

    from llmpipe.data.loader import build_datasets
    from llmpipe.data.options import DataOptions
    from llmpipe.models.vision import publish_processor
    from llmpipe.resources import folder

    name = "builtin:tiny-llava-next-video"
    _, dest, tok, mm = published[name]
    assert (mm.family, mm.facts["video_token"]) == ("llava_next_video", "<video>")
    videos = motion_rows(name, published)
    vid = tok.convert_tokens_to_ids("<video>")
    batch = collate(name, published, videos)
    assert tuple(batch["pixel_values_videos"].shape) == (2, 4, 3, 56, 56)   # 4 frames, CLIP-sized, not paired
    # LlavaNextVideoProcessor.replace_video_token's count on these pixels: 56/14 = 4x4 patches, pooled by 2 -> 4
    proc = SimpleNamespace(patch_size=14, video_token="<video>")
    theirs = LlavaNextVideoProcessor.replace_video_token(proc, {"pixel_values_videos": batch["pixel_values_videos"]}, 0)
    assert sum(t == vid for t in videos[0]["input_ids"]) == theirs.count("<video>") == 16
    # images on the same model: LLaVA-NeXT's any-resolution count (LlavaNextProcessor's, the same code)
    opts = DataOptions(stage="sft", dataset=("vlm_colours",), dataset_dir=str(folder("data")),
                       template="llava_next_video", cutoff_len=256, max_samples=2)
    images = build_datasets(opts, tok, mm).train
    assert sum(t == tok.convert_tokens_to_ids("<image>") for t in images[0]["input_ids"]) == 36
    image_batch = collate(name, published, images)
    assert set(image_batch) >= {"pixel_values", "image_sizes"}
    model = trained(name, published, train_cfg, batch)
    model(**image_batch).loss.backward()   # and the image rows train the same model (its image path)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    merged = model.merge_and_unload().eval()
    out = tmp_path / "merged"
    merged.save_pretrained(out)
    tok.save_pretrained(out)
    assert publish_processor(dest, out)   # as merge does: the processor files, copied
    inputs = {k: batch[k][:1] for k in ("input_ids", "attention_mask", "pixel_values_videos")}
    torch.save(inputs, tmp_path / "batch.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", RELOAD, str(out), str(tmp_path / "batch.pt")], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"class": "LlavaNextVideoForConditionalGeneration", "new_tokens": 3}
    with torch.no_grad():
        mine = merged(**inputs).logits
    assert torch.allclose(mine, torch.load(tmp_path / "batch.pt.logits"), atol=1e-5)


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory):
    """A vlm_motion clip's 8 frames (56x56) as PNG files, and a 112x112 clip."""
    from llmpipe.data.mm_synthetic_video import encode, frames

    root = tmp_path_factory.mktemp("frames")
    clip = frames(random.Random(0), "right")
    for i, f in enumerate(clip):
        f.save(root / f"f{i}.png")
    (root / "big.mp4").write_bytes(encode(frames(random.Random(1), "left", size=112)))
    return root


def layouts(published):
    """family -> ImageTokens of every video family (Qwen2-VL: tiny_vl's image processor, no model needed)."""
    from llmpipe.data.mm_plugins import ImageTokens
    from llmpipe.models.vision_builtin import SPECS, image_processor

    out = {"qwen2_vl": (ImageTokens(image_processor(SPECS["builtin:tiny_vl"]), facts={"model_type": "qwen2_vl"}),
                        None)}
    for source, _, _, mm in published.values():
        out[mm.facts["model_type"]] = (mm, source)
    return out


def test_frame_lists_and_the_video_flags_act_on_every_video_family(published, frame_folder):
    from llmpipe.data.mm_video import VideoTokens

    frames = [f"f{i}.png" for i in range(8)]
    listed = [*frames[:4], *({"path": f} for f in frames[4:])]   # paths and {"path": ...} dicts
    seen = {}
    for kind, (mm, _) in layouts(published).items():
        def video(mm=mm, kind=kind, **kw):
            flags = {"fps": 2.0, "maxlen": 128, "max_pixels": 65536, "min_pixels": 256, **kw}
            return VideoTokens(mm.image_processor, kind=kind, facts=mm.facts, **flags)

        # a frame list is a clip at video_fps: every frame kept up to video_maxlen, evenly spaced when capped
        clip = video().clip(listed, frame_folder)
        assert (len(clip.frames), clip.indices, clip.sampled_fps) == (8, list(range(8)), 2.0), kind
        capped = video(maxlen=3).clip(listed, frame_folder)
        assert capped.indices == [0, 3, 7] and len(capped.frames) == (4 if kind != "llava_next_video" else 3)
        assert video(fps=4.0).clip(listed, frame_folder).sampled_fps == 4.0   # Qwen2.5-VL: 0.5 s per patch
        # a file: video_fps and video_maxlen change the frames sampled, and so the tokens
        counts = {k: video(**kw).prepare("big.mp4", frame_folder)[1] for k, kw in (
            ("fps2", {}), ("fps4", {"fps": 4.0}), ("maxlen6", {"fps": 4.0, "maxlen": 6}),
            ("small", {"max_pixels": 56 * 56}))}
        counts.update({k: video(**kw).prepare(listed, frame_folder)[1] for k, kw in (   # the 56x56 frames
            ("listed", {}), ("grown", {"min_pixels": 112 * 112}))})
        per_frame = counts["fps4"] // 8
        assert (counts["fps2"], counts["maxlen6"]) == (4 * per_frame, 6 * per_frame), (kind, counts)
        frames_small = video(max_pixels=56 * 56).frames("big.mp4", frame_folder)
        assert {f.size for f in frames_small} == {(56, 56)}                 # video_max_pixels acts on each frame
        if kind == "llava_next_video":   # frames are resized and cropped to the tower's 56 px: same tokens; below
            assert counts["small"] == counts["fps2"] and counts["listed"] == counts["grown"]   # 56 px, other pixels
            lay = video().layout
            big, tiny = (video(**kw).frames("big.mp4", frame_folder)[0] for kw in ({}, {"max_pixels": 28 * 28}))
            assert tiny.size == (28, 28) and not (lay.frame_pixels(tiny) == lay.frame_pixels(big)).all()
        else:   # Qwen-VL: fewer patches per frame at 56x56, more when video_min_pixels grows the frames
            assert counts["small"] < counts["fps2"] and counts["listed"] < counts["grown"], (kind, counts)
        seen[kind] = counts
    assert set(seen) == {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_next_video"}
    # through the loader: a frame list is one entry of the videos column (a missing frame is a bad row)
    from llmpipe.data.loader import build_datasets
    from llmpipe.data.mm_video import attach
    from llmpipe.data.options import DataOptions

    chat = [{"role": "user", "content": "<video>Which way?"}, {"role": "assistant", "content": "right"}]
    (frame_folder / "rows.json").write_text(json.dumps([{"messages": chat, "videos": [listed]},
                                                        {"messages": chat, "videos": [["f0.png", "gone.png"]]}]))
    (frame_folder / "dataset_info.json").write_text(json.dumps({"frames": {
        "file_name": "rows.json", "formatting": "sharegpt", "columns": {"messages": "messages", "videos": "videos"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}))
    source, _, tok, mm = published["builtin:tiny-qwen2.5-vl"]
    attach(mm, source, vision(video_fps=4.0))
    bundle = build_datasets(DataOptions(stage="sft", dataset=("frames",), dataset_dir=str(frame_folder),
                                        template="qwen2_vl", cutoff_len=256), tok, mm)
    rep = bundle.report.datasets[0]
    assert (rep.total, rep.kept) == (2, 1) and "gone.png" in rep.examples[0]["reason"]
    row = bundle.train[0]
    assert (len(row["videos"][0]), row["video_sampled_fps"]) == (8, [4.0])   # all 8 frames, at video_fps
    # mixed frame sizes are a bad row with a reason, not a crash
    from PIL import Image

    from llmpipe.data.media import MediaError
    from llmpipe.data.mm_video import read_frames

    Image.new("RGB", (40, 40)).save(frame_folder / "odd.png")
    with pytest.raises(MediaError, match="differ in size"):
        read_frames(["f0.png", "odd.png"], frame_folder, 2.0)


def test_video_flags_are_refused_naming_a_family_that_reads_no_videos():
    from llmpipe.config.compose import compose
    from llmpipe.pipeline.preflight import validate

    def problems(*overrides):
        return [p.render() for p in validate(compose(["train.stage=sft", "data.template=chatml", *overrides]))[1]]

    out = problems("model.name_or_path=builtin:tiny-llava-next", "vision.video_fps=4.0", "data.dataset=vlm_motion")
    assert any("vision.video_fps" in p and "(llava_next) reads no videos" in p for p in out), out
    assert any("data.dataset" in p and "llava_next does not read" in p for p in out), out
    out = problems("model.name_or_path=builtin:tiny-qwen3-vl", "data.dataset=vlm_motion", "data.cutoff_len=512",
                   "train.do_predict=true")   # inference takes no videos: predict would lose them
    assert any("data.dataset" in p and "bare <video>" in p for p in out), out
    for name in FAMILIES:
        assert problems(f"model.name_or_path={name}", "data.dataset=vlm_motion", "data.cutoff_len=512",
                        "vision.video_fps=4.0", "vision.video_maxlen=6", "vision.video_max_pixels=3136",
                        "vision.video_min_pixels=1024") == []
