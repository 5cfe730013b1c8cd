"""Qwen2.5-Omni's thinker (``model=tiny_qwen2_5_omni``) through the real pipeline, in process: rows with an image, a
tone clip and a video whose audio track is a tone (LLaMA-Factory's format, data URLs), under
``vision.use_audio_in_video=true``; a silent video is a bad row with the reason; 2 LoRA steps; the adapter merged
and saved with the published processor as the merge stage does; the merged folder reloads with the thinker's class
and generates once from an image, a clip and a video with its audio. (The merge and export stages are left out of
the run: the export's fresh-process check alone costs 15 s; both were measured to pass on these rows.) The
flag's effect is measured on the same rows tokenized with it off: fewer audio tokens, no interleaving, another
loss. The audio tower returns exactly as many features as the rows have ``<|AUDIO|>`` tokens. (The flag's refusal on
Qwen2-VL through the CLI: tests/cli/test_omni_cli.py.)"""
from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import pytest
import test_methods
from test_vlm_video_audio import run

torch = pytest.importorskip("torch")
pytest.importorskip("av")
pytest.importorskip("soundfile")
pytestmark = pytest.mark.slow

NAME = "builtin:tiny-qwen2-5-omni"
BASE = ["model=tiny_qwen2_5_omni", "data.template=qwen2_omni", "train.stage=sft", "train.do_train=true",
        "train.finetuning_type=lora", "lora.rank=4", "train.max_steps=2", "train.per_device_train_batch_size=4",
        "train.logging_steps=1", "train.save_strategy=no", "model.disable_gradient_checkpointing=true",
        "run.sample=false", "data.cutoff_len=400", "export.dir=null"]   # the merge is done below (see the docstring)
store = test_methods.store   # a fixture: a store that shares the built-in models of the session
QUESTION = "<image><audio><video>Which way does the square move, and is the tone high or low?"


def _png(colour) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (56, 56), colour).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_data(root: Path) -> Path:
    """``omni`` (openai format): 4 rows with an image, a tone and a 4 s video (8 frames at 2 fps) with a tone track,
    then a row whose video has no audio track."""
    from llmpipe.data import mm_synthetic_audio as audio
    from llmpipe.data import mm_synthetic_video as video

    rng = random.Random(4)
    rows = []
    for i in range(5):
        direction = video.DIRECTIONS[i % 2]
        pitch = ("high", "low")[i % 2]
        clip = video.encode(video.frames(rng, direction), fps=2, tone_hz=(1000.0, 150.0)[i % 2] if i < 4 else None)
        wav = audio.tone(rng.uniform(*audio.PITCHES[pitch]), 0.5, 8000)
        rows.append({"messages": [{"role": "user", "content": QUESTION},
                                  {"role": "assistant", "content": f"{direction}, {pitch}"}],
                     "images": [_png((200, 40 * i, 40))], "audios": ["data:audio/wav;base64," +
                                                                    base64.b64encode(wav).decode("ascii")],
                     "videos": [video.data_url(clip)]})
    data = root / "data"
    data.mkdir()
    (data / "omni.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"omni": {
        "file_name": "omni.json", "formatting": "openai",
        "columns": {"messages": "messages", "images": "images", "audios": "audios", "videos": "videos"}}}))
    return data


@pytest.fixture(scope="module")
def omni_run(tmp_path_factory, store):
    root = tmp_path_factory.mktemp("omni")
    data = write_data(root)
    result = run(store, *BASE, "data.dataset=omni", f"data.dataset_dir={data}", "vision.use_audio_in_video=true")
    return root, data, result


def _rows(load: Path, data: Path, use_audio_in_video: bool):
    """The ``omni`` rows tokenized as the load stage does, with vision.use_audio_in_video as given."""
    from dataclasses import replace

    from transformers import AutoTokenizer

    from llmpipe.config.families.vision import VisionConfig
    from llmpipe.data import mm_omni, mm_plugins
    from llmpipe.data.loader import build_datasets
    from llmpipe.data.mm_video import attach
    from llmpipe.data.options import DataOptions

    folder = load / "tokenizer"
    source = json.loads((load / "source.json").read_text())["model"]
    vision = replace(VisionConfig(), use_audio_in_video=use_audio_in_video)
    images = mm_plugins.load(folder)
    attach(images, source, vision)
    tok = AutoTokenizer.from_pretrained(str(folder))
    opts = DataOptions(stage="sft", dataset=("omni",), dataset_dir=str(data), template="qwen2_omni", cutoff_len=400)
    return tok, build_datasets(opts, tok, mm_omni.load(folder, images, vision)).train


def test_omni_rows_train_merge_export_and_generate(omni_run):
    from transformers import AutoTokenizer, Qwen2_5OmniThinkerForConditionalGeneration

    from llmpipe.data import mm_omni
    from llmpipe.training.collators import collator_for

    root, data, result = omni_run
    assert result.status == {s: "ran" for s in ("load", "adapt", "train")}
    load = result.outputs["load"]
    report = json.loads((load / "data_report.json").read_text())["datasets"][0]
    assert report["kept"] == 4 and [e["row"] for e in report["examples"]] == [4]
    assert "no usable audio track" in report["examples"][0]["reason"]
    # LoRA target=all adapts the language model only (both towers and their projectors are left alone)
    adapter = json.loads((result.outputs["train"] / "adapter" / "adapter_config.json").read_text())
    assert adapter["target_modules"] and all("language_model" in m for m in adapter["target_modules"])
    # the merged model carries its processor, reloads with the thinker's class and generates from an image, a clip
    # and a video with its audio
    merged = _merge(result, root / "merged")
    tok = AutoTokenizer.from_pretrained(str(merged))
    mm = mm_omni.load_published(merged)
    assert mm is not None and mm.images.image_token == "<|IMAGE|>" and mm.audio.feature_extractor.chunk_length == 4
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(str(merged)).eval()
    _, rows = _rows(load, data, True)
    row = dict(rows[0])
    ids = row["input_ids"]
    prompt = ids[: next(i for i, lab in enumerate(row["labels"]) if lab != -100)]
    batch = collator_for(_cfg(), tok, rows)(
        [{**row, "input_ids": prompt, "labels": [-100] * len(prompt), "attention_mask": [1] * len(prompt)}])
    assert batch["use_audio_in_video"] is True
    batch.pop("labels")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == len(prompt) + 3 or int(out[0, -1]) == tok.eos_token_id


def _merge(result, out: Path) -> Path:
    """The trained adapter merged into the base and saved with the tokenizer and the processor, as merge does."""
    from peft import PeftModel
    from transformers import AutoTokenizer, Qwen2_5OmniThinkerForConditionalGeneration

    from llmpipe.models.vision import publish_processor

    load = result.outputs["load"]
    base = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        json.loads((load / "source.json").read_text())["model"])
    PeftModel.from_pretrained(base, str(result.outputs["train"] / "adapter")).merge_and_unload().save_pretrained(out)
    AutoTokenizer.from_pretrained(str(load / "tokenizer")).save_pretrained(out)
    assert publish_processor(load / "tokenizer", out)   # the processor files, copied
    return out


def _cfg():
    """What the collator reads of the config."""
    from types import SimpleNamespace

    return SimpleNamespace(data=SimpleNamespace(ignore_pad_token_for_loss=True))


def test_use_audio_in_video_feeds_the_track(omni_run):
    """With the flag, each video carries its 4 s track (100 audio tokens) interleaved with its frames in 2 s chunks,
    the forward gets use_audio_in_video=True, the tower's features match the audio tokens, and the loss differs."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from llmpipe.training.collators import collator_for

    _, data, result = omni_run
    load = result.outputs["load"]
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        json.loads((load / "source.json").read_text())["model"]).eval()
    cfg = _cfg()
    losses, audio_tokens, answers = {}, {}, {}
    for flag in (True, False):
        tok, rows = _rows(load, data, flag)
        assert len(rows) == (4 if flag else 5)   # without the flag the silent video is a good row
        rows = rows.select(range(4))
        ids = tok.convert_tokens_to_ids
        audio_tokens[flag] = [sum(t == ids("<|AUDIO|>") for t in r["input_ids"]) for r in rows]
        assert [len(r["audios"]) for r in rows] == [2 if flag else 1] * 4
        batch = collator_for(cfg, tok, rows)([dict(r) for r in rows])
        assert batch.get("use_audio_in_video", False) is flag
        with torch.no_grad():
            feats = model.model.get_audio_features(batch["input_features"], batch["feature_attention_mask"])
            assert feats.last_hidden_state.shape[0] == int((batch["input_ids"] == ids("<|AUDIO|>")).sum())
            out = model(**batch)
            losses[flag] = float(out.loss)
            answers[flag] = out.logits[batch["labels"] != -100]   # the logits where the answers are scored
        text = tok.decode(rows[0]["input_ids"])
        if flag:   # <|vision_bos|><|audio_bos|> then 2 s of frames, 2 s of sound, the next 2 s of each
            chunk = "<|VIDEO|>" * 8 + "<|AUDIO|>" * 50
            assert "<|vision_bos|><|audio_bos|>" + chunk + chunk + "<|audio_eos|><|vision_eos|>" in text
        else:
            assert "<|vision_bos|>" + "<|VIDEO|>" * 16 + "<|vision_eos|>" in text
    assert [a - b for a, b in zip(audio_tokens[True], audio_tokens[False])] == [100] * 4
    assert losses[True] != losses[False]
    assert float((answers[True] - answers[False]).abs().max()) > 1e-3   # float noise is ~1e-6 at these magnitudes
