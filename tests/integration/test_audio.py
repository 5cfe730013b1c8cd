"""Audio through the whole pipeline on the built-in tiny Qwen2-Audio (``model=tiny_qwen2_audio``), in process: LF's
format with ``audios`` columns and ``<audio>`` placeholders (sharegpt with data URLs; openai with paths relative to
data.media_dir, a ``{"path"}`` dict, a data URL and a corrupt file), vision.audio_sampling_rate=8000 (the clips are
resampled to 8 kHz, the published feature extractor is made for 8 kHz), cutoff_len counting the audio tokens, 2 LoRA
steps (the language model only: the audio tower is untouched), merge and export; then a fresh process reloads the
export with AutoProcessor and the model class, expands a tone with transformers' own processor (the same number of
audio tokens as llmpipe's) and generates once. Pre-flight refusals for audio are checked without running anything."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_vlm_video_audio import run, validate

torch = pytest.importorskip("torch")
pytest.importorskip("soundfile")
pytestmark = pytest.mark.slow

BASE = ["model=tiny_qwen2_audio", "data.template=chatml", "train.stage=sft", "train.do_train=true",
        "train.finetuning_type=lora", "lora.rank=4", "train.max_steps=2", "train.per_device_train_batch_size=4",
        "train.logging_steps=1", "train.save_strategy=no", "model.disable_gradient_checkpointing=true",
        "run.sample=false"]
# run / validate: the in-process pipeline (compose, pre-flight, plan, run) of test_vlm_video_audio


def write_data(root: Path) -> Path:
    """A dataset folder: ``tones_sharegpt`` (conversations/from/value, data URLs) and ``tones_openai`` (paths
    relative to media_dir, a {"path"} dict, a data URL, a corrupt file, and a 2 s clip whose 50 audio tokens alone
    exceed cutoff_len=48)."""
    from llmpipe.data.mm_synthetic_audio import QUESTION, rows, tone

    data, media = root / "data", root / "media"
    media.mkdir(parents=True)
    share = [{"conversations": [{"from": "human", "value": r["messages"][0]["content"]},
                                {"from": "gpt", "value": r["messages"][1]["content"]}], "audios": r["audios"]}
             for r in rows(4, "sharegpt")]
    openai = []
    for i, r in enumerate(rows(4, "openai", rate=22050)):
        wav = base64.b64decode(r["audios"][0].split(",", 1)[1])
        (media / f"tone{i}.wav").write_bytes(wav)
        ref = [f"tone{i}.wav", {"path": f"tone{i}.wav"}, r["audios"][0], f"tone{i}.wav"][i]
        openai.append({"messages": [{"role": "system", "content": "Listen."}, *r["messages"]], "audios": [ref]})
    (media / "broken.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    (media / "long.wav").write_bytes(tone(440.0, 2.0, 16000))
    for name in ("broken.wav", "long.wav"):
        openai.append({"messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "low"}],
                       "audios": [name]})
    data.mkdir()
    (data / "share.json").write_text(json.dumps(share))
    (data / "openai.json").write_text(json.dumps(openai))
    (data / "dataset_info.json").write_text(json.dumps({
        "tones_sharegpt": {"file_name": "share.json", "formatting": "sharegpt",
                           "columns": {"messages": "conversations", "audios": "audios"}},
        "tones_openai": {"file_name": "openai.json", "formatting": "openai",
                         "columns": {"messages": "messages", "audios": "audios"}}}))
    return data


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    data = write_data(root)
    st = root / "store"
    st.mkdir()
    shared = os.environ.get("LLMPIPE_BUILTIN_CACHE")
    if shared:   # the built-in models once per test session
        (Path(shared) / "models").mkdir(parents=True, exist_ok=True)
        (st / "models").symlink_to(Path(shared) / "models")
    result = run(st, *BASE, "data.dataset='tones_sharegpt,tones_openai'", f"data.dataset_dir={data}",
                 f"data.media_dir={root / 'media'}", "data.cutoff_len=48", "vision.audio_sampling_rate=8000",
                 f"export.dir={root / 'export'}")
    return root, result


def test_audio_rows_train_merge_and_export(audio_run):
    import numpy as np
    from safetensors.torch import load_file

    from llmpipe.data.mm_audio import token_count

    root, result = audio_run
    assert result.status == {s: "ran" for s in ("load", "adapt", "train", "merge", "export")}
    load = result.outputs["load"]
    # bad rows name the dataset, the row, the file and the reason; cutoff_len counts the audio tokens
    report = {d["dataset"]: d for d in json.loads((load / "data_report.json").read_text())["datasets"]}
    assert report["tones_sharegpt"]["kept"] == 4 and report["tones_openai"]["kept"] == 4
    bad = {e["row"]: e["reason"] for e in report["tones_openai"]["examples"]}
    assert set(bad) == {4, 5}
    assert "broken.wav" in bad[4] and "audio tokens alone exceed cutoff_len=48" in bad[5]
    # vision.audio_sampling_rate=8000: the stored clips are 8 kHz samples (22.05 kHz and 8 kHz files alike), and the
    # published feature extractor is made for 8 kHz with the encoder's window (200 mel frames)
    import datasets

    rows = datasets.load_from_disk(str(load / "train"))
    fe = json.loads((load / "tokenizer" / "processor_config.json").read_text())["feature_extractor"]
    assert (fe["sampling_rate"], fe["hop_length"], fe["nb_max_frames"]) == (8000, 80, 200)
    tok = json.loads((load / "tokenizer" / "llmpipe-mm.json").read_text())
    assert tok["plugin"] == "qwen2_audio" and tok["sampling_rate"] == 8000
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(load / "tokenizer"))
    audio_id = tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    for r in rows:
        (clip,) = r["audios"]
        samples = len(np.frombuffer(clip, dtype="<f4"))
        assert 0.5 * 8000 <= samples <= 1.0 * 8000   # 0.5-1 s tones at 8 kHz
        frames = -(-samples // 80)
        assert sum(t == audio_id for t in r["input_ids"]) == token_count(frames)
        assert all(lab == -100 for t, lab in zip(r["input_ids"], r["labels"]) if t == audio_id)
    # LoRA target=all: the language model only; the merge leaves the audio tower as it was
    adapter = json.loads((result.outputs["train"] / "adapter" / "adapter_config.json").read_text())
    assert all("language_model" in m for m in adapter["target_modules"])
    base = load_file(str(Path(json.loads((load / "source.json").read_text())["model"]) / "model.safetensors"))
    merged = load_file(str(root / "export" / "model.safetensors"))
    tower = [k for k in base if "audio_tower." in k]
    assert tower and all(torch.equal(base[k], merged[k]) for k in tower)
    assert any(not torch.equal(base[k], merged[k]) for k in base if "language_model." in k)
    assert result.metrics["export"]["generated_tokens"] > 0   # the export stage's own fresh-process reload


RELOAD = r"""
import json, sys
import numpy as np, torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration
from llmpipe.data.mm_synthetic_audio import tone
import soundfile as sf, io
folder = sys.argv[1]
proc = AutoProcessor.from_pretrained(folder)
model = Qwen2AudioForConditionalGeneration.from_pretrained(folder).eval()
rate = proc.feature_extractor.sampling_rate
clip, _ = sf.read(io.BytesIO(tone(1000.0, 0.75, rate)), dtype="float32")
text = ("<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>Is the tone high or low?<|im_end|>\n"
        "<|im_start|>assistant\n")
inputs = proc(text=text, audio=[clip], sampling_rate=rate, return_tensors="pt")
n = int((inputs["input_ids"] == model.config.audio_token_index).sum())
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
print(json.dumps({"processor": type(proc).__name__, "rate": rate, "audio_tokens": n,
                  "new": out.shape[1] - inputs["input_ids"].shape[1]}))
"""


def test_export_reloads_with_autoprocessor_and_generates_from_a_tone(audio_run):
    from llmpipe.data.mm_audio import AudioTokens, token_count
    from llmpipe.data.mm_synthetic_audio import tone

    root, _ = audio_run
    proc = subprocess.run([sys.executable, "-c", RELOAD, str(root / "export")], check=False, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor.from_pretrained(str(root / "export"))
    at = AudioTokens(fe, fe.sampling_rate)
    n = at.count(at.samples({"bytes": tone(1000.0, 0.75, 8000)}))   # llmpipe's count for the same clip
    assert got["processor"] == "Qwen2AudioProcessor" and got["rate"] == 8000
    assert got["audio_tokens"] == n == token_count(75) and 1 <= got["new"] <= 3


@pytest.mark.parametrize(("overrides", "key", "words"), [
    (["model=tiny", "data.dataset=audio_tones"], "data.dataset", "text-only model"),
    (["model=tiny_vl", "data.dataset=audio_tones"], "data.dataset", "audios columns that qwen2_vl does not read"),
    (["model=tiny_vl", "vision.audio_sampling_rate=8000"], "vision.audio_sampling_rate", "qwen2_vl) reads no audio"),
    (["model=tiny_qwen2_audio", "vision.audio_sampling_rate=7"], "vision.audio_sampling_rate", "200 mel frames"),
    (["model=tiny_qwen2_audio", "vision.image_max_pixels=4096"], "vision.image_max_pixels", "reads no images"),
    (["model=tiny_qwen2_audio", "data.dataset=audio_tones", "train.stage=kto", "train.do_train=true"],
     "train.stage", "passes image pixels to TRL's trainers, not audio features"),
    (["model=tiny_qwen2_audio", "data.dataset=audio_tones", "train.stage=pt", "train.do_train=true"],
     "data.dataset", "reads audios only, with train.stage=sft"),
    (["model=tiny_qwen2_audio", "data.dataset=audio_tones", "data.eval_dataset=audio_tones_eval",
      "train.do_predict=true", "train.predict_with_generate=true"], "data.dataset", "takes no audio"),
])
def test_audio_that_cannot_act_is_refused_before_anything_runs(overrides, key, words):
    _, problems = validate(*overrides)
    found = [p for p in problems if p.key == key]
    assert found and any(words in p.render() for p in found), [p.render() for p in problems]
