"""Every vision-language family llmpipe has a multimodal layer for, on its tiny random instance (llmpipe.models.vlm_zoo),
in process: the processor published as the load stage does (with the family's llmpipe-mm.json), the bundled image rows
tokenized under LLaMA-Factory's chat template for the family, the model built as the train stage builds it (LoRA on the
language model, the projector trained whole), 2 optimizer steps on one batch (the loss on that batch falls), the
adapter merged and saved with its processor as merge does; then one fresh process reloads every merged folder with
transformers' own classes (the model class, AutoProcessor where this environment builds it, else the saved image
processor and tokenizer) and generates from an image. The stage plumbing of a VLM is run end to end by
tests/integration/test_vlm.py (tiny_vl) and test_lf_vlm_recipe below."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_methods
from vlm_support import two_steps

from llmpipe.models import vlm_zoo

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

TEMPLATE = {"qwen2_5_vl": "qwen2_vl", "qwen3_vl": "qwen3_vl_nothink", "llava": "llava", "gemma3": "gemma3",
            "llava_next": "llava_next", "internvl": "intern_vl", "idefics3": "chatml",   # LF has no idefics3 template
            "smolvlm": None}   # nor a SmolVLM one: data.template=null, the model's own (User:/Assistant:, <end_of_utterance>)
COMPOSITE = ("llava", "llava_next", "gemma3", "idefics3")   # their transformers processor builds without torchvision
# families whose whole test (images and videos, merge, reload, generation) is tests/integration/test_video_families.py
# (Qwen2.5-Omni's thinker, with its audio: tests/integration/test_omni.py)
VIDEO_FAMILY_TESTS = ("builtin:tiny-llava-next-video", "builtin:tiny-qwen2-5-omni")
EXPORTS: dict[str, tuple[str, Path]] = {}   # what the reload test reloads: name -> (model_type, folder)
store = test_methods.store   # a fixture: a store that shares the built-in models of the session


def typed_cfg(*overrides: str):
    from llmpipe.config.compose import compose
    from llmpipe.config.typed import typed
    from llmpipe.pipeline.preflight import validate

    validated, problems = validate(compose(["+recipe=vlm_demo", "lora.rank=4", *overrides]))
    assert not problems, [p.render() for p in problems]
    return typed(validated.cfg)


def config_mismatch(saved: dict, made: dict, path: str = "") -> list[str]:
    """The keys of a saved config.json whose value the made config does not have (dtype aside)."""
    out = []
    for k, v in saved.items():
        if isinstance(v, dict) and isinstance(made.get(k), dict):
            out += config_mismatch(v, made[k], f"{path}{k}.")
        elif k not in ("dtype", "transformers_version", "_name_or_path") and made.get(k) != v:
            out.append(f"{path}{k}")
    return out


@pytest.mark.parametrize("name", [n for n in vlm_zoo.names() if n not in VIDEO_FAMILY_TESTS])
def test_family_tokenizes_trains_and_merges(name, store, tmp_path_factory):
    from transformers import AutoTokenizer

    from llmpipe.data import mm_plugins
    from llmpipe.data.loader import build_datasets
    from llmpipe.data.options import DataOptions
    from llmpipe.models.facts import facts_of
    from llmpipe.models.trainable import build
    from llmpipe.models.vision import publish_processor
    from llmpipe.resources import folder
    from llmpipe.training.collators import collator_for

    kind = vlm_zoo.model_type(name)
    work = tmp_path_factory.mktemp(kind)
    cfg = typed_cfg(f"model.name_or_path={name}", f"data.template={TEMPLATE[kind] or 'null'}")
    source = vlm_zoo.ensure(name, store)
    facts = facts_of(name, cache_root=str(store))   # pre-flight's: the config made without building, then this folder
    assert facts.folder == source and not config_mismatch(json.loads((source / "config.json").read_text()), facts.config)
    assert json.loads((source / "llmpipe-mm.json").read_text())["model_type"] == kind   # the folder describes itself
    assert publish_processor(source, work / "tokenizer", cfg.vision, AutoTokenizer.from_pretrained(str(source)))
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(work / "tokenizer")
    tok = AutoTokenizer.from_pretrained(str(work / "tokenizer"))
    mm = mm_plugins.load(work / "tokenizer")
    assert mm.family == {"qwen2_5_vl": "qwen2_vl", "internvl": "intern_vl"}.get(kind, kind)
    opts = DataOptions(stage="sft", dataset=("vlm_colours",), dataset_dir=str(folder("data")),
                       template=TEMPLATE[kind], cutoff_len=256, max_samples=4)
    rows = build_datasets(opts, tok, mm).train
    assert len(rows) == 4
    image_id = tok.convert_tokens_to_ids(mm.image_token)
    for r in rows:   # image tokens never carry a label
        assert any(t == image_id for t in r["input_ids"])
        assert all(lab == -100 for t, lab in zip(r["input_ids"], r["labels"]) if t == image_id)
    batch = collator_for(cfg, tok, rows)([dict(r) for r in rows])
    model = build(str(source), cfg, log=lambda m: None)
    trainable = {n.split(".lora_")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(tower in n for n in trainable
                                 for tower in (".vision_tower.", ".visual.blocks.", ".vision_model."))
    two_steps(model, batch)   # the loss on the batch falls
    merged = model.merge_and_unload()
    out = work / "merged"
    merged.save_pretrained(out)
    tok.save_pretrained(out)
    assert publish_processor(work / "tokenizer", out)   # as the merge stage does: the processor files, copied
    facts = json.loads((out / "llmpipe-mm.json").read_text())
    assert facts["model_type"] == kind and (out / "processor_config.json").is_file() == (kind in COMPOSITE)
    EXPORTS[name] = (kind, out)


RELOAD = r'''
import json, sys, torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
out = {}
for name, folder in json.loads(sys.argv[1]).items():
    kind = AutoConfig.from_pretrained(folder).model_type
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    img = Image.new("RGB", (56, 56), (220, 30, 30))
    if kind in ("llava", "llava_next", "gemma3", "idefics3"):   # transformers' composite processor, as saved
        proc = AutoProcessor.from_pretrained(folder)
        batch = proc(text=[proc.image_token + "What colour is the shape?"], images=[img], return_tensors="pt")
        how = type(proc).__name__
    else:   # the Qwen-VL and InternVL processors need torchvision: the saved image processor and tokenizer
        tok, ip = AutoTokenizer.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)
        px = ip(images=[img], return_tensors="pt")
        if kind == "internvl":
            n = model.config.image_seq_length * int(px.get("num_patches", [1])[0])
            text = "<img>" + "<IMG_CONTEXT>" * n + "</img>"
        elif kind == "smolvlm":   # SmolVLMProcessor's expansion (the processor itself needs torchvision)
            from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string
            rc = ip(images=[img], return_row_col_info=True)
            vc = model.config.vision_config
            text = get_image_prompt_string(rc["rows"][0][0], rc["cols"][0][0],
                                           (vc.image_size // vc.patch_size) ** 2 // model.config.scale_factor ** 2,
                                           "<fake_token_around_image>", "<image>", "<global-img>")
            text = tok.apply_chat_template([{"role": "user", "content": text + "What colour is the shape?"}],
                                           tokenize=False, add_generation_prompt=True)
        else:
            text = "<|vision_start|>" + "<|image_pad|>" * (int(px["image_grid_thw"].prod()) // ip.merge_size ** 2) \
                + "<|vision_end|>"
        if kind != "smolvlm":
            text += "What colour is the shape?"
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **{k: v for k, v in px.items()
                                                                             if k != "num_patches"}}
        if kind not in ("internvl", "smolvlm"):
            batch["mm_token_type_ids"] = (ids == model.config.image_token_id).long()
        how = type(ip).__name__ + " + " + type(tok).__name__
    with torch.no_grad():
        gen = model.generate(**batch, max_new_tokens=3, do_sample=False, min_new_tokens=3)
    out[name] = {"class": type(model).__name__, "processor": how, "new_tokens": gen.shape[1] - batch["input_ids"].shape[1]}
print(json.dumps(out))
'''


def test_lf_vlm_recipe_runs_on_the_tiny_instance(store, tmp_path):
    """LLaMA-Factory's examples/train_lora/qwen3vl_lora_sft.yaml (HEAD ff6d4d1), imported, runs on
    builtin:tiny-qwen3-vl with its own template (qwen3_vl_nothink) and LoRA target all. Overridden: the model path,
    the data (LF's demo sets are not bundled: vlm_colours), the size of the job (8 rows, 2 steps, no workers), and
    video_max_pixels back to its default (videos are read for qwen2_vl only, so pre-flight refuses the value). An
    export.dir adds merge and export (whose own fresh-process check reloads the model): the exported folder carries
    the processor files, and the reload test below generates from it."""
    from llmpipe.tools.cli import main

    recipe = Path(__file__).parents[1] / "fixtures" / "lf" / "examples" / "qwen3vl_lora_sft.yaml"
    assert main(["import-llamafactory", str(recipe), "-o", str(tmp_path / "recipe" / "qwen3vl.yaml")]) == 0
    assert "template: qwen3_vl_nothink" in (tmp_path / "model" / "qwen3vl.yaml").read_text()
    env = {**os.environ, "LLMPIPE_RECIPES": str(tmp_path), "LLMPIPE_CACHE": str(store), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "llmpipe", "+recipe=qwen3vl", "model.name_or_path=builtin:tiny-qwen3-vl",
                           "data.dataset=vlm_colours", "data.max_samples=8", "train.max_steps=2",
                           "vision.video_max_pixels=65536", "train.dataloader_num_workers=0",
                           "data.preprocessing_num_workers=1", "train.gradient_accumulation_steps=1",
                           "train.per_device_train_batch_size=4", "train.plot_loss=false",
                           f"export.dir={tmp_path / 'export'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"STDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-3000:]}"
    assert "data vlm_colours (train): 8/8 rows kept" in proc.stdout
    assert "step 2/2" in proc.stdout
    (load,) = (store / "load").iterdir()
    facts = json.loads((load / "tokenizer" / "llmpipe-mm.json").read_text())
    assert facts["plugin"] == "qwen3_vl" and facts["model_type"] == "qwen3_vl"
    lock = next(tmp_path.glob("outputs/qwen3vl/*/llmpipe.lock.yaml")).read_text()
    assert "template: qwen3_vl_nothink" in lock
    export = tmp_path / "export"
    assert json.loads((export / "llmpipe-mm.json").read_text()) == facts
    assert (export / "preprocessor_config.json").is_file()
    EXPORTS["LF qwen3vl_lora_sft, exported"] = ("qwen3_vl", export)


def test_exports_reload_with_transformers_classes_and_generate_from_an_image(store):
    """One fresh process for every family merged above and the LF recipe's export (no llmpipe import). It asks for
    the module's ``store`` so that xdist keeps it on the worker that ran the tests above (tests/conftest.py groups
    a file's tests that share a module fixture); without it, it could land alone on the other worker and skip."""
    if not EXPORTS:
        pytest.skip("no family was merged in this session")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", RELOAD, json.dumps({k: str(v) for k, (_, v) in EXPORTS.items()})],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, (kind, _) in EXPORTS.items():
        assert got[name]["new_tokens"] == 3, got[name]
        assert got[name]["processor"].endswith("Processor") == (kind in COMPOSITE), got[name]
