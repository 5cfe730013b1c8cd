"""``llmpipe-tools``: explain, import-llamafactory, docs (subprocesses run from a temporary directory)."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from llmpipe.tools.cli import main

ROOT = Path(__file__).resolve().parents[2]
TSV = ROOT / "tests" / "fixtures" / "seed_flags.tsv"
TOKEN = "hf_SecretTokenValue1234567890"


def _rows():
    with TSV.open(encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")]
    return [(r[0], r[1], len(r) > 2 and r[2] == "negated") for r in rows]


ROWS = _rows()


def tools(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "LLMPIPE_RECIPES"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "llmpipe.tools.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def llmpipe(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "LLMPIPE_RECIPES"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "llmpipe", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------------ explain
def test_seed_table_is_complete():
    assert len(ROWS) >= 201


@pytest.mark.parametrize("flag, path, negated", ROWS, ids=[r[0] for r in ROWS])
def test_explain_every_seed_flag(flag, path, negated, capsys):
    assert main(["explain", flag]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == path
    if negated:
        assert f"--{flag} means {path}=false" in lines[1]


def test_explain_all_seed_flags_in_one_subprocess(tmp_path):
    r = tools("explain", *[f"--{f}" for f, _, _ in ROWS], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    blocks = r.stdout.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [p for _, p, _ in ROWS]


@pytest.mark.parametrize("name", ["lora_rank", "--lora_rank", "lora-rank", "--lora-rank", "lora.rank"])
def test_explain_spellings(name, tmp_path):
    r = tools("explain", name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "lora.rank"
    text = r.stdout
    assert "type:" in text and "int" in text and "default:" in text and ">= 1" in text
    assert "--lora_rank" in text and "meaning:" in text


def test_explain_negation(tmp_path):
    r = tools("explain", "no_use_fast_tokenizer", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "model.use_fast_tokenizer"
    assert "--no_use_fast_tokenizer means model.use_fast_tokenizer=false" in lines[1]


def test_explain_details(capsys):
    assert main(["explain", "quantization_method"]) == 0
    out = capsys.readouterr().out
    assert "bitsandbytes -> bnb" in out and "allowed:" in out and "older parameter document" in out
    assert main(["explain", "warmup_ratio"]) == 0
    assert "translation:" in capsys.readouterr().out
    assert main(["explain", "hf_hub_token"]) == 0
    out = capsys.readouterr().out
    assert "HF_TOKEN" in out and "model.hf_hub_token=" not in out   # secrets never on argv


def test_explain_family(capsys):
    assert main(["explain", "lora"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "lora" and "lora.rank" in out


def test_explain_unknown(tmp_path):
    r = tools("explain", "lora_rnk", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("unknown parameter 'lora_rnk'; closest: ")
    assert "lora_rank" in r.stderr.split("closest:")[1]


def test_tools_import_no_torch(tmp_path):
    code = ("import sys; from llmpipe.tools.cli import main; "
            "assert main(['explain', 'lora_rank']) == 0; assert main(['ls']) == 0; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_no_command_prints_help(tmp_path):
    r = tools(cwd=tmp_path)
    assert r.returncode == 2 and "explain" in r.stdout and "import-llamafactory" in r.stdout


# ------------------------------------------------------------------------------ import-llamafactory
LF_DPO = textwrap.dedent(f"""\
    ### model
    model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct
    trust_remote_code: true
    hf_hub_token: {TOKEN}
    quantization_bit: 4
    quantization_method: bitsandbytes

    ### method
    stage: dpo
    do_train: true
    finetuning_type: lora
    lora_rank: 16
    lora_target: all
    pref_beta: 0.25
    pref_loss: sigmoid  # choices: [sigmoid (dpo), orpo, simpo]

    ### dataset
    dataset: demo_pref
    template: qwen
    cutoff_len: 2048
    max_samples: 1000
    overwrite_cache: true
    preprocessing_num_workers: 16
    dataloader_num_workers: 4

    ### output
    output_dir: saves/qwen/lora/dpo
    logging_steps: 10
    save_steps: 500
    plot_loss: true
    overwrite_output_dir: true
    save_only_model: false
    report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]

    ### train
    per_device_train_batch_size: 1
    gradient_accumulation_steps: 8
    learning_rate: 5.0e-6
    num_train_epochs: 3.0
    lr_scheduler_type: cosine
    lr_scheduler_kwargs: '{{"num_cycles": 0.5}}'
    warmup_ratio: 0.1
    bf16: true
    ddp_timeout: 180000000
    resume_from_checkpoint: null
    no_use_fast_tokenizer: true

    ### eval
    val_size: 0.1
    per_device_eval_batch_size: 1
    eval_strategy: steps
    eval_steps: 500
    """)


@pytest.fixture()
def imported(tmp_path):
    src = tmp_path / "qwen_lora_dpo.yaml"
    src.write_text(LF_DPO)
    out = tmp_path / "team" / "recipe" / "lf_dpo.yaml"
    r = tools("import-llamafactory", str(src), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return tmp_path, out, r


def _composed(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_import_writes_a_recipe_that_composes(imported):
    tmp_path, out, _ = imported
    text = out.read_text()
    assert text.startswith("# @package _global_\n")
    assert f"LLMPIPE_RECIPES={tmp_path / 'team'} python -m llmpipe +recipe=lf_dpo" in text
    recipe = yaml.safe_load(text)
    assert recipe["lora"]["rank"] == 16 and recipe["pref"]["beta"] == 0.25
    model = yaml.safe_load((tmp_path / "team" / "model" / "lf_dpo.yaml").read_text())   # the model option
    assert model["model"]["name_or_path"] == "Qwen/Qwen2.5-0.5B-Instruct" and model["data"]["template"] == "qwen"
    assert recipe["quantization"]["method"] == "bnb"              # bitsandbytes -> bnb
    assert recipe["model"]["use_fast_tokenizer"] is False          # no_use_fast_tokenizer: true
    assert "trust_remote_code" not in recipe["model"]              # only the command line may allow it
    assert recipe["train"]["lr_scheduler_kwargs"] == {"num_cycles": 0.5}   # JSON string parsed
    assert recipe["defaults"] == [{"override /model": "lf_dpo"}]   # model=<option> on the command line replaces it
    cfg = _composed(llmpipe("+recipe=lf_dpo", "--cfg", "job", cwd=tmp_path,
                            env={"LLMPIPE_RECIPES": str(tmp_path / "team")}))
    assert cfg["lora"]["rank"] == 16 and cfg["pref"]["beta"] == 0.25
    assert cfg["train"]["stage"] == "dpo" and cfg["train"]["learning_rate"] == 5e-6
    cfg = _composed(llmpipe(f"hydra.searchpath=[file://{tmp_path / 'team'}]", "+recipe=lf_dpo", "--cfg", "job",
                            cwd=tmp_path))
    assert cfg["lora"]["rank"] == 16 and cfg["quantization"]["bit"] == 4


def test_import_never_writes_the_token(imported):
    tmp_path, out, r = imported
    assert TOKEN not in out.read_text() and "hf_hub_token" not in out.read_text()
    assert TOKEN not in r.stdout + r.stderr
    assert "HF_TOKEN" in r.stderr and "warning:" in r.stderr


def test_import_reports_translations(imported):
    _, _, r = imported
    assert "bitsandbytes" in r.stderr and "overwrite_output_dir" in r.stderr and "warmup_ratio" in r.stderr


def test_import_to_stdout(tmp_path):
    src = tmp_path / "sft.yaml"
    src.write_text("model_name_or_path: builtin:tiny\nstage: sft\nlora_rank: 4\nlearning_rate: 1e-4\n")
    r = tools("import-llamafactory", str(src), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    recipe = yaml.safe_load(r.stdout)
    assert recipe == {"model": {"name_or_path": "builtin:tiny"}, "train": {"stage": "sft", "learning_rate": 1e-4},
                      "lora": {"rank": 4}}


def test_import_unknown_keys_are_all_listed(tmp_path):
    src = tmp_path / "bad.yaml"
    src.write_text("model_name_or_path: x\nlora_rnk: 8\nlearning_rat: 1.0e-5\nfoo_bar_baz: 1\n"
                   "no_use_fast_tokenizer: maybe\n")
    out = tmp_path / "r" / "recipe" / "bad.yaml"
    r = tools("import-llamafactory", str(src), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 2
    assert not out.exists()
    assert "4 keys" in r.stderr
    for key in ("lora_rnk", "learning_rat", "foo_bar_baz", "no_use_fast_tokenizer"):
        assert f"x {key}:" in r.stderr
    assert "lora_rank (lora.rank)" in r.stderr and "learning_rate (train.learning_rate)" in r.stderr
    assert "Traceback" not in r.stderr


def test_import_refuses_bad_values_at_compose_time(tmp_path):
    src = tmp_path / "bad_type.yaml"
    src.write_text("model_name_or_path: x\nlora_rank: many\n")
    r = tools("import-llamafactory", str(src), cwd=tmp_path)
    assert r.returncode == 2 and "does not compose" in r.stderr and "lora.rank" in r.stderr
    assert "Traceback" not in r.stderr


def test_import_does_not_overwrite(imported):
    tmp_path, out, _ = imported
    r = tools("import-llamafactory", str(tmp_path / "qwen_lora_dpo.yaml"), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr


# ---------------------------------------------------------------------------------------------- docs
def test_docs_prints_and_writes(tmp_path):
    r = tools("docs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "lora.rank" in r.stdout
    out = tmp_path / "parameters.md"
    r2 = tools("docs", "--write", "-o", str(out), cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert out.read_text() == r.stdout


def test_import_deepspeed(tmp_path):
    src = tmp_path / "ds.yaml"
    src.write_text("model_name_or_path: builtin:tiny\nstage: sft\ndeepspeed: examples/deepspeed/ds_z3_config.json\n")
    r = tools("import-llamafactory", str(src), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    recipe = yaml.safe_load(r.stdout)
    assert recipe["defaults"] == [{"override /launch": "deepspeed_z3"}] and "launch" not in recipe
    src.write_text("model_name_or_path: builtin:tiny\ndeepspeed: my_ds.json\n")
    r = tools("import-llamafactory", str(src), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["launch"] == {"deepspeed": "my_ds.json", "kind": "deepspeed"}
