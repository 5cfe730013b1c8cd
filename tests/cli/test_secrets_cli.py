"""Hub tokens never reach a file, a log line or a printed line, through the real command line (items 9-12)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TOKEN = "hf_FAKEsecret1234567890"        # given on the command line
ENV_TOKEN = "hf_FAKEenvironment0987654321"   # given through HF_TOKEN
CHEAP = ["model=tiny", "data.dataset=demo_sft", "train.do_train=true", "train.max_steps=1", "data.max_samples=8",
         "data.cutoff_len=64", "train.eval_strategy=no", "train.save_strategy=no", "run.objective=train_loss"]


def run(args, cwd, env=None, timeout=300):
    env = {**os.environ, "LLMPIPE_CACHE": str(Path(cwd) / "cache"), "LLMPIPE_GPU_COUNT": "0",
           "LLMPIPE_OFFLINE": "1", "HF_TOKEN": ENV_TOKEN, **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "llmpipe", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _no_token_anywhere(root: Path, *texts: str) -> list[Path]:
    files = [p for p in root.rglob("*") if p.is_file()]
    for p in files:
        data = p.read_bytes()
        assert TOKEN.encode() not in data and ENV_TOKEN.encode() not in data, p
    for text in texts:
        assert TOKEN not in text and ENV_TOKEN not in text
    return files


def test_a_real_sweep_keeps_the_token_out_of_everything(tmp_path):
    """Item 9/10: results.csv, Hydra's job lines, the job and best-setting summary, .hydra/*.yaml, multirun.yaml,
    the lock file, llmpipe.log and every stage.json of the store (one job: the cheapest real run)."""
    out = run(["-m", *CHEAP, f"model.hf_hub_token={TOKEN}", "lora.rank=4"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    files = _no_token_anywhere(tmp_path, out.stdout, out.stderr)
    names = {p.name for p in files}
    assert {"results.csv", "multirun.yaml", "config.yaml", "hydra.yaml", "overrides.yaml", "llmpipe.lock.yaml",
            "llmpipe.log", "stage.json"} <= names, names
    assert "model.hf_hub_token=<redacted>" in out.stdout            # Hydra's "#0 : ..." job line
    assert "best (" in out.stdout and "lora.rank=4" in out.stdout   # the sweep summary, without the token
    [results] = [p for p in files if p.name == "results.csv"]
    assert "hf_hub_token" not in results.read_text()


def test_cfg_info_and_errors_never_print_the_token(tmp_path):
    """Item 11: --cfg job/all (Hydra prints the config itself) and a composition error quoting the value."""
    for args in (["+recipe=demo", f"model.hf_hub_token={TOKEN}", "--cfg", "all"],
                 ["+recipe=demo", f"model.hf_hub_token={TOKEN}", "--info", "config"],
                 ["+recipe=demo", f"model.hf_hub_token={TOKEN}", "lora.rank=abc"]):
        out = run(args, tmp_path)
        assert out.returncode in (0, 2), out.stderr[-2000:]
        assert TOKEN not in out.stdout + out.stderr and ENV_TOKEN not in out.stdout + out.stderr, args
        assert "Traceback" not in out.stderr
    assert "hf_hub_token: <redacted>" in run(["+recipe=demo", f"model.hf_hub_token={TOKEN}", "--cfg", "job"],
                                             tmp_path).stdout


def test_a_recipe_cannot_read_the_token_from_the_environment(tmp_path):
    """Item 12: ${oc.env:HF_TOKEN} in a shared recipe stops the pre-flight (exit 2, the variable named, nothing
    written), so the token never reaches the tokenized data or stage.json."""
    repo = tmp_path / "team" / "recipe"
    repo.mkdir(parents=True)
    (repo / "leaky.yaml").write_text("# @package _global_\ndefaults:\n  - /recipe/demo\n  - _self_\n"
                                     "data:\n  default_system: ${oc.env:HF_TOKEN}\n")
    out = run(["+recipe=leaky", "run.dry_run=true"], tmp_path, env={"LLMPIPE_RECIPES": str(tmp_path / "team")})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "data.default_system" in out.stderr and "HF_TOKEN may hold a secret" in out.stderr
    assert "Traceback" not in out.stderr
    _no_token_anywhere(tmp_path, out.stdout, out.stderr)
    assert not (tmp_path / "outputs").exists()
