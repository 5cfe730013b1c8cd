"""Videos (and the audio flags) through the real pipeline, in-process, on the built-in tiny vision-language model:
the load stage samples the bundled clips by vision.video_fps / video_maxlen and sizes each frame by
video_max_pixels, the train stage runs 2 LoRA steps on video rows (pixel_values_videos and video_grid_thw reach
the model, the adapter moves), and the flags that cannot act for a model are refused before anything runs, naming
its family."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("av")
pytestmark = pytest.mark.slow

VIDEO = ["model=tiny_vl", "data.dataset=vlm_motion", "data.template=chatml", "data.cutoff_len=128",
         "data.max_samples=8", "train.stage=sft", "train.do_train=true", "train.finetuning_type=lora",
         "train.max_steps=2", "train.per_device_train_batch_size=4", "train.logging_steps=1",
         "train.save_strategy=no", "model.disable_gradient_checkpointing=true", "export.dir=null",
         "run.sample=false"]


def validate(*overrides: str):
    from llmpipe.config.compose import compose
    from llmpipe.pipeline.preflight import validate as check

    return check(compose(list(overrides)))


def run(store: Path, *overrides: str):
    from omegaconf import OmegaConf

    from llmpipe.pipeline.dag import build_plan
    from llmpipe.pipeline.fingerprint import compute_fingerprints
    from llmpipe.pipeline.lockfile import LockFile
    from llmpipe.pipeline.runner import Runner
    from llmpipe.pipeline.store import Store

    validated, problems = validate(*overrides)
    assert not problems, [p.render() for p in problems]
    plan = build_plan(validated.cfg)
    compute_fingerprints(plan, Path(store))
    lock = LockFile(None, OmegaConf.to_container(validated.cfg, resolve=True), [])
    return Runner(plan, Store(store), lock).execute()


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    shared = os.environ.get("LLMPIPE_BUILTIN_CACHE")
    if shared:   # the built-in models once per test session
        (Path(shared) / "models").mkdir(parents=True, exist_ok=True)
        (store / "models").symlink_to(Path(shared) / "models")
    # 2 s clips of 8 frames at 4 fps: video_fps=4 samples all 8, video_maxlen=6 caps them at 6; 112x112 frames
    # would be 16 tokens per pair, the clips are 56x56 (4), and video_max_pixels=1600 shrinks them to 40x40 ->
    # the processor's 56x56 floor (still 4): the pixel cap is asserted on the stored frames
    run(store, *VIDEO, "vision.video_fps=4.0", "vision.video_maxlen=6", "vision.video_max_pixels=1600")
    (load,) = (store / "load").iterdir()
    (train,) = (store / "train").iterdir()
    return load, train


def test_two_training_steps_on_video_rows(video_run):
    import json

    from safetensors import safe_open

    from llmpipe.data.mm_media import from_png
    from llmpipe.data.published import open_published

    load, train = video_run
    rows = open_published(load)[0]
    assert "videos" in rows.column_names and len(rows) == 8
    frames = [from_png(b) for b in rows[0]["videos"][0]]
    assert len(frames) == 6                                   # min(8 frames, video_maxlen=6, 2 s * 4 fps)
    assert {f.size for f in frames} == {(40, 40)}             # video_max_pixels=1600 acted on each frame
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(load / "tokenizer"))
    pad = tok.convert_tokens_to_ids("<|video_pad|>")
    assert sum(t == pad for t in rows[0]["input_ids"]) == 3 * 4   # 3 temporal patches x 4 merged patches
    metrics = json.loads((train / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["train_loss"] == metrics["train_loss"]   # 2 steps, a real loss
    with safe_open(str(train / "adapter" / "adapter_model.safetensors"), "pt") as f:
        moved = [n for n in list(f.keys()) if "lora_B" in n and f.get_tensor(n).abs().sum() > 0]
    assert moved, "the LoRA adapter did not move in 2 steps on video rows"


def test_the_training_batches_carry_the_videos_to_the_model(video_run):
    """The train stage's collator turns the stored frames into pixel_values_videos / video_grid_thw with type 2 on
    the video tokens, and the model's output depends on them (zeroed pixels change the logits)."""
    import json

    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from llmpipe.data.published import open_published
    from llmpipe.models.vision import load_image_processor
    from llmpipe.training.collators import MultimodalCollator

    load, _ = video_run
    tok = AutoTokenizer.from_pretrained(str(load / "tokenizer"))
    rows = open_published(load)[0]
    batch = MultimodalCollator(tok, load_image_processor(load / "tokenizer"))([dict(rows[0]), dict(rows[1])])
    assert batch["video_grid_thw"].tolist() == [[3, 4, 4], [3, 4, 4]]    # 6 frames -> 3 pairs of 56x56 (4x4 patches)
    assert batch["pixel_values_videos"].shape == (2 * 3 * 16, 3 * 2 * 14 * 14)
    assert int((batch["mm_token_type_ids"] == 2).sum()) == 2 * 12
    model = AutoModelForImageTextToText.from_pretrained(json.loads((load / "source.json").read_text())["model"]).eval()
    batch.pop("labels")
    with torch.no_grad():
        seen = model(**batch).logits
        blind = model(**{**batch, "pixel_values_videos": torch.zeros_like(batch["pixel_values_videos"])}).logits
    assert not torch.allclose(seen, blind)


@pytest.mark.parametrize("overrides, key, words", [
    (["model=tiny", "vision.video_fps=4.0"], "vision.video_fps", "text-only model (llama)"),
    (["model=tiny_vl", "vision.use_audio_in_video=true"], "vision.use_audio_in_video", "Qwen2.5-Omni"),
    (["model=tiny_vl", "vision.audio_sampling_rate=8000"], "vision.audio_sampling_rate", "qwen2_vl"),
    (["model=tiny", "data.dataset=vlm_motion"], "data.dataset", "text-only"),
])
def test_flags_that_cannot_act_are_refused_naming_the_family(overrides, key, words):
    validated, problems = validate("train.stage=sft", "data.template=chatml", *overrides)
    assert validated is None
    found = [p for p in problems if p.key == key]
    assert found and words in found[0].message, [p.render() for p in problems]


def test_video_flags_are_accepted_on_the_qwen2_vl_layout():
    _, problems = validate(*VIDEO, "vision.video_fps=1.0", "vision.video_maxlen=4",
                           "vision.video_max_pixels=3136", "vision.video_min_pixels=1024")
    assert not problems, [p.render() for p in problems]
