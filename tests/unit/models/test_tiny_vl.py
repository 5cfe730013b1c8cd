"""model=tiny_vl: the built-in Qwen2-VL-layout model loads with its image-text-to-text class, carries its image
processor and the vision tokens, answers text exactly as builtin:tiny does, and rebuilds byte for byte."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow   # builds builtin:tiny once for the session (shared cache), then tiny_vl in seconds


@pytest.fixture(scope="module")
def vl_dir(tmp_path_factory):
    from llmpipe.models.builtin import ensure_builtin

    return ensure_builtin("builtin:tiny_vl", tmp_path_factory.mktemp("cache"))


def test_loads_as_a_vlm_with_processor_and_text_identical_to_tiny(vl_dir, tmp_path_factory):
    from transformers import AutoImageProcessor, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    from llmpipe.models import tiny
    from llmpipe.models.vision import model_class
    from llmpipe.models.vision_builtin import VISION_TOKENS

    vl = AutoModelForImageTextToText.from_pretrained(str(vl_dir))
    assert type(vl).__name__ == "Qwen2VLForConditionalGeneration"
    assert model_class(vl.config) is AutoModelForImageTextToText
    assert type(AutoImageProcessor.from_pretrained(str(vl_dir))).__name__ == "Qwen2VLImageProcessorPil"
    tok = AutoTokenizer.from_pretrained(str(vl_dir))
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) == 1 for t in VISION_TOKENS)
    assert vl.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    lm = AutoModelForCausalLM.from_pretrained(str(tiny.ensure_builtin("builtin:tiny", vl_dir.parent.parent)))
    ids = tok("What is the colour of the sky?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = vl(input_ids=ids).logits[..., :lm.config.vocab_size], lm(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_rebuild_is_byte_identical(vl_dir, tmp_path):
    from llmpipe.models import vision_builtin

    rebuilt = vision_builtin.build_into("builtin:tiny_vl", tmp_path / "again", vl_dir.parent.parent)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "preprocessor_config.json"):
        assert (rebuilt / name).read_bytes() == (vl_dir / name).read_bytes(), name
