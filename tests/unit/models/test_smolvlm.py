"""SmolVLM's layer without training (builtin:tiny-smolvlm, llmpipe.models.vlm_zoo): its images expand as transformers'
SmolVLMProcessor expands them (image splitting into 56-px tiles with their <row_i_col_j> tokens, then the global
image), its tokenizer carries SmolVLM's own chat format (LLaMA-Factory has no SmolVLM template), its freeze groups
cover the model, and pre-flight refuses Gemma 3's pan-and-scan and InternVL's crop_to_patches on it, naming the
family. The model trains, merges and reloads in tests/integration/test_vlm_families.py."""
from __future__ import annotations

import json
import types

import pytest

from llmpipe.models import vlm_zoo

pytestmark = pytest.mark.slow   # trains the zoo tokenizer (about a second)
NAME = "builtin:tiny-smolvlm"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A SmolVLM folder without weights (config, tokenizer, image processor), published as the load stage does."""
    from llmpipe.data import mm_plugins
    from llmpipe.models.vision import publish_processor

    src, dest = tmp_path_factory.mktemp("smolvlm"), tmp_path_factory.mktemp("published")
    tok = vlm_zoo.tokenizer(NAME)
    vlm_zoo.make_config(NAME, tok).save_pretrained(src)
    tok.save_pretrained(src)
    vlm_zoo.image_processor(NAME).save_pretrained(src)
    assert publish_processor(src, dest, types.SimpleNamespace(image_do_pan_and_scan=False, crop_to_patches=False), tok)
    return mm_plugins.load(dest), tok, dest


def test_images_expand_as_smolvlm_processor_does(published):
    import torch
    from PIL import Image

    mm, tok, dest = published
    facts = json.loads((dest / "llmpipe-mm.json").read_text())
    assert (facts["plugin"], facts["model_type"], facts["image_seq_len"]) == ("smolvlm", "smolvlm", 4)
    assert not (dest / "processor_config.json").exists()   # SmolVLMProcessor needs torchvision: not saved
    assert type(mm.image_processor).__name__ == "SmolVLMImageProcessorPil"
    block = "<image>" * 4
    glob = "<fake_token_around_image><global-img>" + block + "<fake_token_around_image>"
    # a wide image (112x56): one row of two 56-px tiles, then the whole image resized to 56 px
    wide = Image.new("RGB", (112, 56), (0, 0, 200))
    text, n = mm.text_for(wide)
    assert text == ("<fake_token_around_image><row_1_col_1>" + block + "<fake_token_around_image><row_1_col_2>" + block
                    + "\n\n" + glob) and n == 12
    # a small square one is first resized to the 112-px longest edge: 2x2 tiles and the global image
    text, n = mm.text_for(Image.new("RGB", (30, 30)))
    assert n == 20 and "<row_2_col_2>" in text and text.endswith(glob)
    ids = tok(text, add_special_tokens=False)["input_ids"]   # each control string is one token
    count = {t: ids.count(tok.convert_tokens_to_ids(t)) for t in ("<image>", "<fake_token_around_image>",
                                                                   "<global-img>", "<row_1_col_1>", "<row_2_col_2>")}
    assert count == {"<image>": 20, "<fake_token_around_image>": 6, "<global-img>": 1, "<row_1_col_1>": 1,
                     "<row_2_col_2>": 1}, count
    batch = mm.batch_inputs([wide], torch.tensor([ids]), tok.convert_tokens_to_ids("<image>"))
    assert tuple(batch["pixel_values"].shape) == (1, 3, 3, 56, 56) and "pixel_attention_mask" in batch


def test_own_chat_format_and_freeze_groups(published):
    from llmpipe.models.vision import family
    from llmpipe.models.vision_freeze import group_of

    _, tok, _ = published
    chat = [{"role": "user", "content": "<image>What colour is the shape?"}, {"role": "assistant", "content": "red"}]
    assert tok.apply_chat_template(chat, tokenize=False) == \
        "<|im_start|>User: <image>What colour is the shape?<end_of_utterance>\nAssistant: red<end_of_utterance>\n"
    assert tok.eos_token == "<end_of_utterance>"   # generation stops at the end of the answer
    model = vlm_zoo.build_model(NAME, tok)
    assert type(model).__name__ == "SmolVLMForConditionalGeneration"
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<end_of_utterance>")
    fam = family(model.config)
    groups = {n: group_of(n, fam) for n, _ in model.named_parameters()}
    assert None not in groups.values() and set(groups.values()) == {"vision", "projector", "language"}
    assert all(g == "projector" for n, g in groups.items() if ".connector." in n)


def problems_of(*overrides: str):
    from llmpipe.config.compose import compose
    from llmpipe.pipeline.preflight import validate

    _, problems = validate(compose(["model=tiny", f"model.name_or_path={NAME}", "data.dataset=vlm_colours",
                                    "data.template=null", *overrides]))
    return [p.render() for p in problems]


def test_preflight_takes_smolvlm_and_refuses_other_families_cropping():
    assert problems_of("train.do_train=true") == []
    # SmolVLM splits images by its own image processor's do_image_splitting (saved with the model); neither LF flag
    # is that switch, so both are refused, naming the family
    for flag, owner in (("vision.crop_to_patches", "InternVL"), ("vision.image_do_pan_and_scan", "Gemma 3")):
        out = problems_of(f"{flag}=true")
        assert any(flag in p and "(smolvlm)" in p and owner in p for p in out), out
