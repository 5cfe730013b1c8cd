"""Merge, quantize, export and push through the real CLI on the built-in tiny model: a LoRA run exported in
legacy .bin format and pushed to a bare git repository, each artifact reloaded in a clean process and compared
with the adapter model; only push re-runs when only the hub id changes; an unreachable or offline hub keeps
the export intact; the trained adapter exported again without training, GPTQ-quantized; bad input. The token
set in the environment is in none of the files written."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

TOKEN = "hf_ExportIntegrationToken0123456789"
QUICK = ["+recipe=demo", "data.dataset=demo_sft", "data.eval_dataset=demo_sft_eval",
         "run.sample=false", "train.num_train_epochs=1", "train.max_steps=12",
         "train.save_steps=100", "train.logging_steps=6", "data.max_samples=192", "train.eval_strategy=no"]
FAKE_HUB = '''
import json, os, sys
import huggingface_hub

class FakeHub:
    def __init__(self, endpoint=None, token=None):
        self.token = token
    def create_repo(self, repo_id, **kw):
        pass
    def upload_folder(self, **kw):
        rec = {"repo_id": kw["repo_id"], "token_from_env": self.token == os.environ["HF_TOKEN"],
               "token_in_argv": any(os.environ["HF_TOKEN"] in a for a in sys.argv),
               "files": sorted(os.listdir(kw["folder_path"]))}
        with open(os.environ["FAKE_HUB_LOG"], "a") as f:
            f.write(json.dumps(rec) + "\\n")
        return type("Commit", (), {"oid": "c0ffee", "commit_url": "https://hub.example/" + kw["repo_id"]})()

huggingface_hub.HfApi = FakeHub
sys.argv = ["llmpipe", *sys.argv[1:]]
from llmpipe.__main__ import cli
cli()
'''
CHECK = '''
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
spec = json.loads(sys.argv[1])
out = {}
tok = AutoTokenizer.from_pretrained(spec["export"])
ids = tok("Every morning the blorp eats honey. What is seven plus seven?", return_tensors="pt")["input_ids"]
def logits(m):
    with torch.no_grad():
        return m(input_ids=ids).logits.float()
exported = AutoModelForCausalLM.from_pretrained(spec["export"], device_map="cpu")
out["files"] = sorted(p for p in __import__("os").listdir(spec["export"]))
if spec.get("adapter"):
    from peft import PeftModel
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(spec["base"]), spec["adapter"]).eval()
    out["diff_vs_adapter_model"] = float((logits(exported) - logits(ref)).abs().max())
if spec.get("clone"):
    out["diff_clone"] = float((logits(exported) - logits(AutoModelForCausalLM.from_pretrained(spec["clone"]))).abs().max())
gen = exported.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                        pad_token_id=tok.pad_token_id)
out["new_tokens"] = gen.shape[1] - ids.shape[1]
out["quantized"] = getattr(exported.config, "quantization_config", None) is not None
print("RESULT" + json.dumps(out))
'''


def _env(cache: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LLMPIPE_OFFLINE")}
    env.update(LLMPIPE_CACHE=str(cache), PYTHONUNBUFFERED="1", HF_TOKEN=TOKEN, **extra)
    return env


def run(cwd: Path, cmd: list[str], cache: Path, expect: int = 0, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(cache, **env), capture_output=True, text=True, timeout=1200)
    if proc.returncode != expect:
        raise AssertionError(f"exit {proc.returncode} (expected {expect})\nSTDOUT:\n{proc.stdout[-4000:]}\n"
                             f"STDERR:\n{proc.stderr[-4000:]}")
    return proc


def llmpipe(cwd, *args, cache, expect=0, **env):
    return run(cwd, [sys.executable, "-m", "llmpipe", *args], cache, expect, **env)


def tools(cwd, *args, cache, expect=0, **env):
    return run(cwd, [sys.executable, "-m", "llmpipe.tools.cli", *args], cache, expect, **env)


def last_lock(root: Path) -> dict:
    locks = sorted(root.rglob("llmpipe.lock.yaml"), key=lambda p: p.stat().st_mtime)
    return yaml.safe_load(locks[-1].read_text())


def statuses(lock: dict) -> dict[str, str]:
    return {k: v["status"] for k, v in lock["stages"].items()}


def clean_check(tmp: Path, **spec) -> dict:
    script = tmp / "check_export.py"
    script.write_text(CHECK)
    env = {k: v for k, v in os.environ.items() if "TOKEN" not in k}
    proc = subprocess.run([sys.executable, str(script), json.dumps({k: str(v) for k, v in spec.items()})],
                          capture_output=True, text=True, timeout=600, env={**env, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT", 1)[1])


def files_holding(token: str, *roots: Path) -> list[str]:
    hits = []
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and token.encode() in p.read_bytes():
                hits.append(str(p))
    return hits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cwd, cache = tmp_path_factory.mktemp("job"), tmp_path_factory.mktemp("cache")
    remote = cwd / "published.git"
    proc = llmpipe(cwd, *QUICK, "export.legacy_format=true", f"export.push_to={remote}", cache=cache)
    lock = last_lock(cwd / "outputs")
    return {"cwd": cwd, "cache": cache, "remote": remote, "lock": lock, "stdout": proc.stdout,
            "export": cwd / "exports" / "demo", "adapter": Path(lock["stages"]["train"]["output"]) / "adapter",
            "base": json.loads((Path(lock["stages"]["load"]["output"]) / "source.json").read_text())["model"]}


def test_lora_export_in_legacy_format_is_verified_and_pushed(trained, tmp_path):
    lock, export = trained["lock"], trained["export"]
    assert statuses(lock) == dict.fromkeys(["load", "adapt", "train", "merge", "export", "push"], "ran")
    names = sorted(p.name for p in export.iterdir())
    assert "pytorch_model.bin" in names and not [n for n in names if n.endswith(".safetensors")]
    for required in ("config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja", "README.md",
                     "llmpipe-export.json"):
        assert required in names
    m = lock["stages"]["export"]["metrics"]
    assert m["legacy_format"] is True and m["shards"] == 1
    assert m["max_logit_diff_vs_adapter_model"] < 1e-4 and m["generated_tokens"] > 0
    assert lock["stages"]["merge"]["metrics"]["max_logit_change"] > 1e-3       # the adapter changed the model
    card = (export / "README.md").read_text()
    for part in ("builtin:tiny", "demo_sft", "sft (lora)", "train: eval_loss", "PyTorch .bin", "+recipe=demo"):
        assert part in card, part
    # the pushed commit holds the export, and its clone loads like the export itself
    git = ["git", "--git-dir", str(trained["remote"])]
    pushed = subprocess.run([*git, "ls-tree", "--name-only", "main"], capture_output=True, text=True).stdout.split()
    assert pushed == names
    assert lock["stages"]["push"]["metrics"]["git_commit"] == subprocess.run(
        [*git, "rev-parse", "main"], capture_output=True, text=True).stdout.strip()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(trained["remote"]), str(clone)], check=True)
    res = clean_check(tmp_path, export=export, base=trained["base"], adapter=trained["adapter"], clone=clone)
    assert res["diff_vs_adapter_model"] < 1e-4 and res["diff_clone"] == 0.0 and res["new_tokens"] > 0


def test_only_push_reruns_when_only_the_hub_id_changes(trained):
    cwd, cache = trained["cwd"], trained["cache"]
    script = cwd / "fake_hub_llmpipe.py"
    script.write_text(FAKE_HUB)
    log = cwd / "fake_hub.jsonl"
    base = [sys.executable, str(script), *QUICK, "export.legacy_format=true", f"export.push_to={trained['remote']}"]
    for repo in ("me/first", "me/second"):
        run(cwd, [*base, f"export.hub_model_id={repo}"], cache, FAKE_HUB_LOG=str(log))
        st = statuses(last_lock(cwd / "outputs"))
        assert st == {**dict.fromkeys(["load", "adapt", "train", "merge", "export"], "cached"), "push": "ran"}, st
    run(cwd, [*base, "export.hub_model_id=me/second"], cache, FAKE_HUB_LOG=str(log))
    assert set(statuses(last_lock(cwd / "outputs")).values()) == {"cached"}
    uploads = [json.loads(line) for line in log.read_text().splitlines()]
    assert [u["repo_id"] for u in uploads] == ["me/first", "me/second"]
    assert all(u["token_from_env"] and not u["token_in_argv"] for u in uploads)
    assert "pytorch_model.bin" in uploads[0]["files"]
    # the git remote got no second commit: the export did not change
    count = subprocess.run(["git", "--git-dir", str(trained["remote"]), "rev-list", "--count", "main"],
                           capture_output=True, text=True).stdout.strip()
    assert count == "1"


def test_unreachable_or_offline_hub_keeps_the_export(trained):
    cwd, cache, export = trained["cwd"], trained["cache"], trained["export"]
    before = {p.name: p.read_bytes() for p in export.iterdir()}
    args = [*QUICK, "export.legacy_format=true", f"export.push_to={trained['remote']}", "export.hub_model_id=me/third"]
    proc = llmpipe(cwd, *args, cache=cache, expect=1, HF_ENDPOINT="http://127.0.0.1:9")
    assert "could not reach the Hugging Face Hub" in proc.stderr and "untouched" in proc.stderr
    assert "Traceback" not in proc.stderr and TOKEN not in proc.stderr + proc.stdout
    lock = last_lock(cwd / "outputs")
    assert lock["stages"]["push"]["status"] == "failed" and lock["stages"]["export"]["status"] == "cached"
    proc = llmpipe(cwd, *args, cache=cache, expect=2, HF_HUB_OFFLINE="1")
    assert "export.hub_model_id" in proc.stdout + proc.stderr
    assert {p.name: p.read_bytes() for p in export.iterdir()} == before


def _second_adapter(base: str, folder: Path) -> Path:
    """Another LoRA adapter of the same base (small random B, so it changes the model a little)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(7)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=["o_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.01)
    model.save_pretrained(str(folder))
    return folder


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("gptqmodel", "optimum")),
                    reason="GPTQ export needs the export extra: pip install 'llmpipe[export]'")
def test_export_adapters_without_training_quantized_to_4_bits(trained, tmp_path):
    cwd, cache = trained["cwd"], trained["cache"]
    out = cwd / "exports" / "gptq4"
    second = _second_adapter(trained["base"], tmp_path / "second-adapter")
    proc = tools(cwd, "export", str(trained["adapter"]), str(second), "-o", str(out), "--bits", "4",
                 "--calibration", "demo_pt", "--nsamples", "8", "--maxlen", "64", "--data", "demo_sft", cache=cache)
    assert "python -m llmpipe" in proc.stdout
    lock = last_lock(cwd / "outputs")
    assert statuses(lock) == dict.fromkeys(["load", "merge", "quantize", "export"], "ran")
    assert lock["stages"]["merge"]["metrics"]["adapters_merged"] == 2
    q = lock["stages"]["quantize"]["metrics"]
    assert q["bits"] == 4 and q["calibration_windows"] == 8 and q["generated_tokens"] > 0
    assert 1.0 < q["perplexity_unquantized"] < 1e3 and 1.0 < q["perplexity_quantized"] < 1e3
    assert lock["stages"]["export"]["metrics"]["max_logit_diff_vs_quantized_model"] == 0.0
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["bits"] == 4 and qc["quant_method"] == "gptq" and not qc.get("dataset")
    assert "GPTQ 4-bit" in (out / "README.md").read_text()
    res = clean_check(tmp_path, export=out)
    assert res["quantized"] and res["new_tokens"] > 0


def test_bad_input_fails_cleanly_and_writes_no_export(trained):
    """(An untrained adapter, other shapes, malformed calibration data: tests/unit/exporting/test_export_*.py.)"""
    cwd, cache = trained["cwd"], trained["cache"]
    wrong = cwd / "exports" / "wrong-base"
    proc = tools(cwd, "export", str(trained["adapter"]), "-o", str(wrong), "--model", "builtin:tiny-random",
                 "--data", "demo_sft", cache=cache, expect=1)
    assert "does not match the base model" in proc.stderr and "builtin:tiny-random" in proc.stderr
    assert "Traceback" not in proc.stderr and not wrong.exists()
    assert not list(wrong.parent.glob(".wrong-base*"))
    mine = cwd / "my-folder"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    proc = tools(cwd, "export", str(trained["adapter"]), "-o", str(mine), "--data", "demo_sft", cache=cache, expect=2)
    assert "did not write" in proc.stdout + proc.stderr and (mine / "notes.txt").read_text() == "keep me"


def test_no_written_file_holds_the_token(trained):
    """Runs last: the token was in the environment of every run above."""
    clone = trained["cwd"] / "token-clone"
    subprocess.run(["git", "clone", "-q", str(trained["remote"]), str(clone)], check=True)
    assert files_holding(TOKEN, trained["cwd"], trained["cache"]) == []
