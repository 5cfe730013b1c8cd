"""The red team's validation cases through the real CLI: each mistake exits 2 before anything is written, names
its key, prints no traceback and never echoes a secret; the run folder of a refusal does not survive."""
from __future__ import annotations

import subprocess
import sys

import pytest

BASE = ["model=tiny", "data.dataset=demo_sft", "train.do_train=true", "run.dry_run=true"]
TOKEN = "hf_FAKEredteam1234567890"

# one run per pre-flight phase (field checks, rules, plan): every problem of a phase is reported at once
CASES = {
    "fields": (["+lora.foo=1", f"+model.hf_hub_tokn={TOKEN}", "train.learning_rate=inf",
                "lora.rank=99999999999999999999", "data.eval_dataset='demo_sft_eval,,demo_sft_eval'"],
               ["lora.foo", "model.hf_hub_tokn", "train.learning_rate", "lora.rank", "data.eval_dataset"]),
    "rules": (["data.dataset_dir=/etc", "run.objective=happiness", "lora.target=''", "model.name_or_path=' '",
               "data.dataset='demo_sft,demo_sft'"],
              ["data.dataset_dir", "run.objective", "lora.target", "model.name_or_path", "data.dataset"]),
    "model-facts": (["lora.target='q_proj,qkv_proj'", "lora.rank=4096"], ["lora.target", "lora.rank"]),
    "freeze-depth": (["train.finetuning_type=freeze", "freeze.trainable_layers=7"], ["freeze.trainable_layers"]),
    "plan": (["run.force=[trian]"], ["run.force"]),
    "chained-step": (["+pipeline.before.sft={train.stagee: sft}"], ["pipeline.before.sft"]),
    "store-is-a-file": (["run.cache_root=/etc/hostname"], ["run.cache_root"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_with_exit_2_key_named_nothing_written(name, tmp_path, cli_env):
    overrides, keys = CASES[name]
    out = subprocess.run([sys.executable, "-m", "llmpipe", *BASE, *overrides], cwd=tmp_path, env=cli_env,
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 2, f"rc={out.returncode}\n{text}"
    assert "Traceback" not in text, text
    problems = [ln for ln in out.stderr.splitlines() if ln.strip().startswith("x ")]
    for key in keys:
        assert any(key in ln for ln in problems), f"{key} not named:\n{out.stderr}"
    assert TOKEN not in text
    assert list(tmp_path.iterdir()) == [], f"something was written: {sorted(p.name for p in tmp_path.rglob('*'))}"


def test_refusal_inside_the_task_removes_the_job_folder(tmp_path, monkeypatch):
    """A refusal that only the task function can make (after Hydra made the job folder) leaves nothing: the
    folder, with Hydra's snapshots and log, and the empty folders above it go."""
    from llmpipe import app

    job = tmp_path / "outputs" / "demo" / "2026-01-01_00-00-00"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("{}")
    (job / "llmpipe.log").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app, "_hydra_job", lambda: (job, None, None, ""))

    def refuse(*a, **k):
        raise SystemExit(2)

    monkeypatch.setattr("llmpipe.pipeline.session.Session.open", refuse)
    monkeypatch.setattr("llmpipe.secrets.take_from_config", lambda cfg: {})
    with pytest.raises(SystemExit) as e:
        app.run_task(None)
    assert e.value.code == 2
    assert list(tmp_path.iterdir()) == []


def test_job_folder_with_results_is_kept(tmp_path, monkeypatch):
    from llmpipe import app

    job = tmp_path / "outputs" / "run"
    (job / ".hydra").mkdir(parents=True)
    (job / "llmpipe.lock.yaml").write_text("status: running\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app, "_hydra_job", lambda: (job, None, None, ""))
    app.remove_job_dir()
    assert (job / "llmpipe.lock.yaml").is_file()
