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


# --- audio: a tiny Qwen2-Audio built offline (llmpipe.models.audio_builtin) and llmpipe.data.mm_audio -------------
# The pipeline does not route audio rows yet (pre-flight refuses them); this exercises the model layer and the data
# layer together with transformers' own classes: resample, placeholder expansion, 2 LoRA steps, merge, save,
# reload with AutoProcessor + the model class, generate once.

def test_tiny_qwen2_audio_resamples_trains_merges_reloads_and_generates(tmp_path):
    import numpy as np
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from llmpipe.data.media import MediaError
    from llmpipe.data.mm_audio import AudioTokens, decode, token_count
    from llmpipe.data.mm_synthetic_audio import rows, tone
    from llmpipe.models.audio_builtin import build

    model, proc = build(tmp_path / "base")
    # vision.audio_sampling_rate resamples: an 8 kHz 440 Hz tone read at 16 kHz has twice the samples and its
    # spectrum still peaks at 440 Hz; read at 8 kHz it is unchanged
    wav = tone(440.0, 1.0, 8000)
    raw, rate = decode({"bytes": wav})
    assert (rate, len(raw)) == (8000, 8000)
    at16, at8 = AudioTokens(proc.feature_extractor, 16000), AudioTokens(proc.feature_extractor, 8000)
    up = at16.samples(wav)
    assert len(up) == 16000 and len(at8.samples(wav)) == 8000
    assert abs(np.fft.rfftfreq(len(up), 1 / 16000)[np.abs(np.fft.rfft(up)).argmax()] - 440.0) < 2.0
    with pytest.raises(MediaError, match="broken.wav"):
        (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
        decode("broken.wav", tmp_path)
    # <audio> expands to <|audio_bos|> <|AUDIO|> x n <|audio_eos|>, n from the real mel frames
    tok = proc.tokenizer
    audio_id = tok.convert_tokens_to_ids("<|AUDIO|>")
    clips, ids, labels = [], [], []
    for r in rows(4):
        clip = at16.samples(r["audios"][0])
        n = at16.count(clip)
        frames = int(at16.features([clip])["feature_attention_mask"].sum())
        assert frames == len(clip) // 160 + (len(clip) % 160 > 0) and n == token_count(frames)
        text = tok.apply_chat_template(at16.expand(r["messages"], [n]), tokenize=False)
        row = tok(text, add_special_tokens=False)["input_ids"]
        assert sum(t == audio_id for t in row) == n
        clips.append(clip)
        ids.append(row)
        answer = tok(r["messages"][1]["content"], add_special_tokens=False)["input_ids"]
        labels.append([-100] * (len(row) - len(answer) - 2) + row[-len(answer) - 2:])
    width = max(map(len, ids))
    batch = {"input_ids": torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in ids]),
             "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids]),
             **at16.features(clips)}
    lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    # 2 LoRA steps on the language model (the audio tower and projector stay frozen)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)"))
    opt = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-2)
    peft.train()
    losses = []
    for _ in range(2):
        loss = peft(**batch, labels=lab).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert not any("audio_tower" in n for n, p in peft.named_parameters() if p.requires_grad)
    merged = peft.merge_and_unload().eval()
    with torch.no_grad():
        expected = merged(**batch).logits
    merged.save_pretrained(tmp_path / "export")
    proc.save_pretrained(tmp_path / "export")
    # reload with transformers' own classes and generate once from a tone
    again = Qwen2AudioForConditionalGeneration.from_pretrained(str(tmp_path / "export")).eval()
    proc2 = AutoProcessor.from_pretrained(str(tmp_path / "export"))
    assert type(proc2).__name__ == "Qwen2AudioProcessor"
    with torch.no_grad():
        assert torch.allclose(again(**batch).logits, expected, atol=1e-5)
    prompt = tok.apply_chat_template(at16.expand([{"role": "user", "content": "<audio>Is the tone high or low?"}],
                                                 [at16.count(clips[0])]), tokenize=False, add_generation_prompt=True)
    inputs = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        gen = again.generate(**inputs, **AudioTokens(proc2.feature_extractor, 16000).features([clips[0]]),
                             max_new_tokens=3, do_sample=False)
    new = gen[0, inputs["input_ids"].shape[1]:]
    assert 1 <= len(new) <= 3 and (len(new) == 3 or new[-1].item() == tok.eos_token_id)
