"""``python -m llmpipe +recipe=vlm_demo`` end to end, once: the built-in tiny vision-language model (model=tiny_vl)
learns to read images. The same question is asked of every held-out image, so only the image tells the four
colours apart: accuracy is at chance (25 %) before training and >= 90 % after, and with every image blanked
(white, same size, same tokens) it stays at chance, which shows the answer comes from the image."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from vlm_support import accuracy, generate_from_images, trained_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    stdout, cwd, store = trained_demo(tmp_path_factory)   # shared with test_vlm_infer.py: one training per session
    (load,) = (store / "load").iterdir()
    (train,) = (store / "train").iterdir()
    return SimpleNamespace(stdout=stdout), load, train, cwd


def test_the_tiny_vlm_learns_to_read_the_image(run):
    torch = pytest.importorskip("torch")
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    proc, load, train, _ = run
    assert "image processor published next to the tokenizer" in proc.stdout
    assert (load / "tokenizer" / "preprocessor_config.json").is_file()
    source = json.loads((load / "source.json").read_text())["model"]
    base = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32)
    assert type(base).__name__ == "Qwen2VLForConditionalGeneration"
    before = accuracy(base, load)
    model = PeftModel.from_pretrained(base, str(train / "adapter"))
    after, blank = accuracy(model, load), accuracy(model, load, blank=True)
    print(f"held-out accuracy: {before:.0%} before, {after:.0%} after, {blank:.0%} with blank images")
    assert before <= 0.4
    assert after >= 0.9
    assert blank <= 0.4


def test_vision_tower_stayed_frozen_and_the_merger_trained(run):
    """The recipe's switches: LoRA on the language model, the merger trained whole, the tower untouched."""
    from safetensors import safe_open

    _, _, train, _ = run
    with safe_open(str(Path(train) / "adapter" / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert any(".merger." in n for n in names)
    assert any(".language_model." in n and "lora_A" in n for n in names)
    assert not any(".visual.blocks." in n or ".patch_embed." in n for n in names)


def test_the_export_reloads_with_transformers_classes_and_answers_from_the_image(run):
    """The recipe merges and exports to exports/vlm_demo: the folder carries the image processor, reloads with
    AutoModelForImageTextToText / AutoTokenizer / AutoImageProcessor, and names the colour of held-out images."""
    from llmpipe.data.mm_media import open_image, to_png
    from llmpipe.resources import folder

    export = run[3] / "exports" / "vlm_demo"
    assert (export / "preprocessor_config.json").is_file()
    rows = json.loads((folder("data") / "vlm_colours_eval.json").read_text())[:8]
    answers = generate_from_images(export, [to_png(open_image(r["images"][0])) for r in rows])
    right = sum(a.strip().startswith(r["messages"][1]["content"]) for a, r in zip(answers, rows))
    assert right >= 6, list(zip(answers, [r["messages"][1]["content"] for r in rows]))
