"""``llmpipe-tools import-llamafactory`` on fixtures written after LLaMA-Factory's examples (same keys and
values): v0 training with a custom DeepSpeed file, KTO with batch 1, an inference YAML, refused keys, and the
v1 nested format. The recipes are composed through Hydra as ``python -m llmpipe`` composes them."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from llmpipe.tools import import_lf

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "lf"


@pytest.fixture()
def lf(tmp_path, monkeypatch):
    """A copy of the fixture tree, run from its root as LLaMA-Factory runs (paths relative to it)."""
    root = tmp_path / "LLaMA-Factory"
    shutil.copytree(FIXTURES, root)
    monkeypatch.chdir(root)
    return root


def _import(src: Path, out: Path, *flags: str) -> int:
    return import_lf.run(argparse.Namespace(file=src, output=out, force=False,
                                            skip_unsupported="--skip-unsupported" in flags))


def _compose(repo: Path, name: str, *over: str):
    from llmpipe.config.compose import compose

    return compose([f"hydra.searchpath=[file://{repo}]", f"+recipe={name}", *over])


def test_v0_sft_model_option_deepspeed_file_and_notes(lf, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert _import(Path("examples/qwen3_lora_sft_ds3.yaml"), repo / "recipe" / "ds3.yaml") == 0
    err = capsys.readouterr().err
    recipe = (repo / "recipe" / "ds3.yaml").read_text()
    assert "override /model: ds3" in recipe and "name_or_path" not in recipe
    assert "trust_remote_code" not in recipe and "model.trust_remote_code=true to the command line" in err
    assert "overwrite_output_dir: True dropped" in err and "overwrite_cache: True dropped" in err

    cfg = _compose(repo, "ds3")
    assert cfg.model.name_or_path == "Qwen/Qwen3-4B-Instruct-2507" and cfg.data.template == "qwen3_nothink"
    assert cfg.lora.rank == 8 and cfg.train.per_device_train_batch_size == 1 and cfg.launch.kind == "deepspeed"
    # the user's own DeepSpeed file, content kept: not llmpipe's z3 preset of the same file name
    ds = Path(cfg.launch.deepspeed)
    assert ds == lf / "examples" / "deepspeed" / "ds_z3_config.json"
    assert json.loads(ds.read_text())["zero_optimization"]["stage3_max_live_parameters"] == 5e8

    # model=<option> on the command line wins over the imported model, its template included
    tiny = _compose(repo, "ds3", "model=tiny")
    assert tiny.model.name_or_path == "builtin:tiny" and tiny.data.template is None
    assert tiny.lora.rank == 8   # the rest of the recipe stays


def test_kto_batch_of_one_keeps_the_examples_per_step(lf, tmp_path, capsys):
    from llmpipe.pipeline.preflight import validate

    repo = tmp_path / "repo"
    assert _import(Path("examples/qwen3_lora_kto.yaml"), repo / "recipe" / "kto.yaml") == 0
    assert "gradient_accumulation_steps: 8 -> 4" in capsys.readouterr().err
    cfg = _compose(repo, "kto", "model=tiny", "data.dataset=demo_kto")
    assert (cfg.train.per_device_train_batch_size, cfg.train.gradient_accumulation_steps) == (2, 4)
    _, problems = validate(cfg)
    assert not [p for p in problems if p.rule == "pref-kto-batch"]
    # written by hand, the pre-flight says how to get there
    _, problems = validate(_compose(repo, "kto", "model=tiny", "data.dataset=demo_kto",
                                    "train.per_device_train_batch_size=1", "train.gradient_accumulation_steps=8"))
    (kto,) = [p for p in problems if p.rule == "pref-kto-batch"]
    assert "train.per_device_train_batch_size=2 train.gradient_accumulation_steps=4" in kto.fix


def test_inference_yaml_points_to_chat_and_serve(lf, tmp_path, capsys):
    from llmpipe.pipeline.dag import plan_problems

    repo = tmp_path / "repo"
    assert _import(Path("examples/qwen3_lora_sft_inference.yaml"), repo / "recipe" / "infer.yaml") == 0
    recipe = (repo / "recipe" / "infer.yaml").read_text()
    assert "python -m llmpipe.chat +recipe=infer" in recipe and "python -m llmpipe.serve +recipe=infer" in recipe
    model = OmegaConf.load(repo / "model" / "infer.yaml")
    assert model.model.adapter_name_or_path == "saves/qwen3-4b/lora/sft"
    (nothing,) = [p for p in plan_problems(_compose(repo, "infer", "model=tiny")) if "nothing to do" in p.message]
    assert "python -m llmpipe.chat" in nothing.message and "llmpipe.serve" in nothing.fix


def test_refused_keys_give_the_reason_or_are_left_out_on_request(lf, tmp_path, capsys):
    repo = tmp_path / "repo"
    out = repo / "recipe" / "mca.yaml"
    src = tmp_path / "mca.yaml"
    src.write_text(Path("examples/qwen3_lora_sft_ray.yaml").read_text().replace("ray_num_workers: 4",
                                                                                  "tensor_model_parallel_size: 2"))
    assert _import(src, out) == 2
    err = capsys.readouterr().err
    assert "tensor_model_parallel_size: 2 refused: Megatron" in err and "use_kt" not in err.split("refused")[0]
    assert not out.exists()
    assert _import(src, out, "--skip-unsupported") == 0
    err = capsys.readouterr().err
    assert "use_kt: False dropped (it asks for nothing)" in err
    assert "#   tensor_model_parallel_size: 2 NOT imported: Megatron" in out.read_text()


def test_unknown_key_still_stops_the_import(lf, tmp_path, capsys):
    src = tmp_path / "typo.yaml"
    src.write_text("model_name_or_path: Qwen/Qwen3-4B\nlearning_rat: 1.0e-4\n")
    assert _import(src, tmp_path / "repo" / "recipe" / "typo.yaml", "--skip-unsupported") == 2
    assert "learning_rat: unknown; closest: learning_rate" in capsys.readouterr().err


def test_v1_nested_format(lf, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert _import(Path("examples/v1_train_lora_sft.yaml"), repo / "recipe" / "v1.yaml") == 0
    err = capsys.readouterr().err
    assert "v1 format" in err and "global_batch_size: 4 -> gradient_accumulation_steps: 4" in err
    cfg = _compose(repo, "v1")
    assert cfg.model.name_or_path == "Qwen/Qwen3-4B" and cfg.train.stage == "sft" and cfg.train.do_train
    assert cfg.train.finetuning_type == "lora" and (cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout) == (16, 32, 0.05)
    assert cfg.data.dataset == f"{lf}/data/identity.json,{lf}/data/alpaca_en_demo.json"
    assert cfg.data.max_samples == 500 and cfg.train.max_steps == 10 and cfg.generate.max_new_tokens == 128
    assert Path(cfg.launch.deepspeed) == lf / "examples" / "deepspeed" / "ds_z3_config.json"


def test_v1_fsdp2_is_the_launch_option(lf, tmp_path, capsys):
    src = tmp_path / "fsdp.yaml"
    src.write_text("model: Qwen/Qwen3-0.6B\nmodel_class: llm\ndist_config:\n  name: fsdp2\n  dcp_path: null\n"
                   "train_dataset: data/v1_sft_demo.yaml\nmicro_batch_size: 1\nmax_steps: 10\n")
    repo = tmp_path / "repo"
    assert _import(src, repo / "recipe" / "fsdp.yaml") == 0
    assert _compose(repo, "fsdp").launch.kind == "fsdp"
    local = _compose(repo, "fsdp", "launch=local")   # replaced as a whole from the command line
    assert local.launch.kind == "local" and not local.launch.fsdp


def test_stdout_without_a_recipe_folder_says_the_model_is_inline(lf, tmp_path, capsys):
    assert _import(Path("examples/qwen3_lora_kto.yaml"), None) == 0
    cap = capsys.readouterr()
    assert "name_or_path: Qwen/Qwen3-4B-Instruct-2507" in cap.out
    assert "model=<option> on the command line would not replace it" in cap.err


def test_translations_without_composing(tmp_path):
    from llmpipe.config.flags import flag_table

    conv = import_lf.convert({"fsdp": ["full_shard", "auto_wrap"], "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
                              "gradient_checkpointing": False, "gradient_checkpointing_kwargs": {"use_reentrant": False},
                              "use_kt": False, "fp8": None}, flag_table(), tmp_path / "x.yaml")
    assert conv.values["launch.fsdp"] == "full_shard auto_wrap"
    assert conv.values["launch.fsdp_config"] == {"transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]}
    assert conv.values["model.disable_gradient_checkpointing"] is True
    assert conv.values["model.use_reentrant_gc"] is False
    assert "use_kt" not in str(conv.values) and any(n.startswith("use_kt: False dropped") for n in conv.notes)
    with pytest.raises(import_lf.ImportFailed, match="gradient_checkpointing_kwargs: .* refused: .*use_reentrant_gc"):
        import_lf.convert({"gradient_checkpointing_kwargs": {"preserve_rng_state": False}}, flag_table(), tmp_path / "x.yaml")
