"""The per-family multimodal layer without weights: the vision-language zoo's configs, tokenizers and image processors
(llmpipe.models.vlm_zoo) published as the load stage publishes them. vision.image_do_pan_and_scan reaches Gemma 3's
processor and vision.crop_to_patches InternVL's (more image tokens, more pixel tiles, and the setting saved with the
processor, so an export reloads with it); pre-flight refuses either flag on another family, and a vision-language
model of a family llmpipe has no layer for, naming the family."""
from __future__ import annotations

import json
import types

import pytest

from llmpipe.models import vlm_zoo

pytestmark = pytest.mark.slow   # trains the zoo tokenizer (about a second)


def folder_of(name: str, tmp_path):
    """A model folder without weights: config.json, tokenizer, image processor."""
    out = tmp_path / name.split(":")[1]
    tok = vlm_zoo.tokenizer(name)
    vlm_zoo.make_config(name, tok).save_pretrained(out)
    tok.save_pretrained(out)
    vlm_zoo.image_processor(name).save_pretrained(out)
    return out, tok


def published(name, tmp_path, **flags):
    from llmpipe.data import mm_plugins
    from llmpipe.models.vision import publish_processor

    src, tok = folder_of(name, tmp_path)
    vision = types.SimpleNamespace(**{"image_do_pan_and_scan": False, "crop_to_patches": False, **flags})
    dest = tmp_path / ("pub-" + "-".join(f"{k}{v}" for k, v in sorted(flags.items())) + name.split(":")[1])
    assert publish_processor(src, dest, vision, tok)
    return mm_plugins.load(dest), tok, dest


@pytest.mark.parametrize(("name", "flag", "key"), [("builtin:tiny-gemma3-vl", "image_do_pan_and_scan", "do_pan_and_scan"),
                                                   ("builtin:tiny-internvl", "crop_to_patches", "crop_to_patches")])
def test_the_family_flag_reaches_the_processor(name, flag, key, tmp_path):
    from PIL import Image

    wide = Image.new("RGB", (168, 56), (200, 30, 30))   # 3:1, so Gemma 3 pans and InternVL tiles
    off, tok, _ = published(name, tmp_path)
    on, _, dest = published(name, tmp_path, **{flag: True})
    n_off, (text_on, n_on) = off.count(wide), on.text_for(wide)
    ids = tok(text_on, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.convert_tokens_to_ids(on.image_token)) == n_on   # each image token is one token
    px_off = off.image_processor(images=[wide], return_tensors="pt")["pixel_values"]
    px_on = on.image_processor(images=[wide], return_tensors="pt")["pixel_values"]
    assert (n_off, tuple(px_off.shape)) == (4, (1, 3, 56, 56))
    assert n_on > n_off and px_on.shape[0] > 1, (n_on, tuple(px_on.shape))
    if name == "builtin:tiny-gemma3-vl":   # the original image, then each crop: its own block of soft tokens
        assert text_on.startswith("Here is the original image") and n_on == 4 * px_on.shape[0]
    else:   # InternVL: the crops plus a thumbnail, each image_seq_length tokens
        assert n_on == 4 * px_on.shape[0]
    assert json.loads((dest / "preprocessor_config.json").read_text())[key] is True


def test_each_family_publishes_its_plugin_and_expansion(tmp_path):
    from PIL import Image

    from llmpipe.models.vision import family
    from llmpipe.models.vision_freeze import group_of

    img = Image.new("RGB", (56, 56), (0, 0, 200))
    want = {"builtin:tiny-qwen2.5-vl": ("qwen2_vl", 4), "builtin:tiny-qwen3-vl": ("qwen3_vl", 4),
            "builtin:tiny-llava": ("llava", 16), "builtin:tiny-llava-next": ("llava_next", 36),
            "builtin:tiny-gemma3-vl": ("gemma3", 4), "builtin:tiny-internvl": ("intern_vl", 4),
            "builtin:tiny-idefics3": ("idefics3", 20)}   # 4 tiles of 56 px and the whole image, 4 tokens each
    for name, (plugin, count) in want.items():
        mm, tok, dest = published(name, tmp_path)
        assert (mm.family, mm.count(img)) == (plugin, count), name
        assert json.loads((dest / "llmpipe-mm.json").read_text())["plugin"] == plugin
        # the freeze switches' groups cover the model: every parameter is in exactly one (but LLaVA-NeXT's bare
        # image_newline, in none as in LLaMA-Factory), none is empty
        model = vlm_zoo.build_model(name, tok)
        fam = family(model.config)
        groups = [group_of(n, fam) for n, _ in model.named_parameters()]
        loose = [n for (n, _), g in zip(model.named_parameters(), groups) if g is None]
        assert loose == (["model.image_newline"] if plugin == "llava_next" else []), loose
        assert set(groups) - {None} == {"vision", "projector", "language"}, name
    # an image processor of another family saved without llmpipe-mm.json is not read as Qwen2-VL's
    from llmpipe.data import mm_plugins

    with pytest.raises(ValueError, match="llava model's image processor but no llmpipe-mm.json"):
        mm_plugins.load(tmp_path / "tiny-llava")


def problems_of(*overrides: str):
    from llmpipe.config.compose import compose
    from llmpipe.pipeline.preflight import validate

    _, problems = validate(compose(["model=tiny", *overrides]))
    return [p.render() for p in problems]


def test_preflight_names_the_family(tmp_path):
    out = problems_of("model.name_or_path=builtin:tiny-llava", "vision.image_do_pan_and_scan=true",
                      "data.dataset=vlm_colours")
    assert any("vision.image_do_pan_and_scan" in p and "(llava)" in p and "Gemma 3" in p for p in out), out
    out = problems_of("model.name_or_path=builtin:tiny-gemma3-vl", "vision.crop_to_patches=true",
                      "data.dataset=vlm_colours")
    assert any("vision.crop_to_patches" in p and "(gemma3)" in p and "InternVL" in p for p in out), out
    assert problems_of("model.name_or_path=builtin:tiny-gemma3-vl", "vision.image_do_pan_and_scan=true",
                       "data.dataset=vlm_colours") == []
    # a vision-language model of a family without a layer: image data and training are refused, naming it
    model = tmp_path / "paligemma"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "paligemma", "vision_config": {}}))
    out = problems_of(f"model.name_or_path={model}", "data.dataset=vlm_colours", "train.do_train=true")
    assert any("data.dataset" in p and "'paligemma'" in p and "no multimodal layer" in p for p in out), out
    assert any("model.name_or_path" in p and "'paligemma'" in p for p in out), out
