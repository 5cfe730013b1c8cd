"""How each tool is invoked on the benchmark's work, and how its results are read back.

The same hyper-parameters go to both tools (bench.lfconfigs.COMMON is LLaMA-Factory's spelling; MATCHED is
llmpipe's). LLaMA-Factory turns on by itself what MATCHED sets explicitly: gradient checkpointing (reentrant),
LoRA alpha 2 x rank, fused AdamW. Padding differs: LF's collators pad to a multiple of 8, llmpipe's to the
longest row of the batch (it has no pad-to-multiple setting); tokens/s counts non-pad tokens only.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# llmpipe overrides equal to LLaMA-Factory's sft_lora.yaml plus what LF adds on its own
MATCHED = [
    "data.template=chatml", "data.cutoff_len=256", "data.dataset=bench_sft_chat",
    "train.stage=sft", "train.do_train=true", "train.finetuning_type=lora",
    "lora.rank=8", "lora.alpha=16", "lora.dropout=0", "lora.target=all",
    "train.per_device_train_batch_size=4", "train.gradient_accumulation_steps=1", "train.learning_rate=1e-4",
    "train.max_steps=30", "train.lr_scheduler_type=linear", "train.warmup_steps=0", "train.optim=adamw_torch_fused",
    "train.weight_decay=0", "train.max_grad_norm=1.0", "train.seed=42", "train.logging_steps=5",
    "train.save_strategy=no", "train.bf16=false", "train.fp16=false",
    "model.disable_gradient_checkpointing=false", "model.use_reentrant_gc=true",
]
# llmpipe's own way to run the same work fast: examples packed without cross-attention (no pad tokens,
# each example computed as if alone), no gradient checkpointing (a 5M model's activations are small),
# its default optimizer (adamw_torch)
OWN = [o for o in MATCHED if not o.startswith(("model.disable_gradient", "train.optim"))] + [
    "data.neat_packing=true", "model.disable_gradient_checkpointing=true"]
DPO = [o for o in MATCHED if not o.startswith(("data.dataset=", "train.stage=", "train.max_steps="))] + [
    "data.dataset=bench_pref_chat", "train.stage=dpo", "pref.loss=sigmoid", "pref.beta=0.1", "train.max_steps=20"]
# the same DPO command with the reference log-probs in their own stage (issue 22): the train stage runs no
# reference forward; the stage scores the 80 of the 256 pairs that the 20 steps x 4 read (the plan rule alone
# would keep this one-off run inline); a re-run with another beta finds the stage cached
DPO_STAGED = DPO + ["pref.precompute_reference=true"]
SWEEP = {"lora.rank": ("8", "16"), "pref.beta": ("0.1", "0.5")}
# the sweep runs two jobs at a time with Hydra's joblib launcher (docs/pipeline.md): jobs that share the load
# and adapt stages wait for them once, and one job's single-threaded phases (imports, data, saving) overlap
# the other's training
SWEEP_LAUNCHER = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]

# the invalid configs: name -> llmpipe override (LF's are in bench.lfconfigs.INVALID)
INVALID = {
    "typo_key": "train.learning_rat=1e-4",
    "bad_template": "data.template=chatmlx",
    "dpo_on_sft_data": "train.stage=dpo",
    "quant_bit3": "quantization.bit=3",
    "lora_rank_neg1": "lora.rank=-1",
}
# selective gradient checkpointing (llmpipe only; the matched comparison keeps full checkpointing): the matched
# SFT run recomputing only the attention or only the MLP block of each layer
GC_MODES = {f"sft_gc_{mode}": MATCHED + [f"model.gradient_checkpointing={mode}", "model.use_reentrant_gc=false"]
            for mode in ("attention", "mlp")}
TRAIN_CASES = {"sft_matched": MATCHED, "sft_own": OWN, "dpo": DPO, "dpo_ref": DPO_STAGED, **GC_MODES}
LF_CASES = {"sft_matched": "sft_lora", "sft_own": "sft_lora_packing", "dpo": "dpo_lora"}
GPU_EXTRA = ["train.bf16=true", "train.per_device_train_batch_size=8"]
GPU_LF_EXTRA = {"bf16": True, "per_device_train_batch_size": 8}


def llmpipe_python() -> Path:
    venv = ROOT / ".venv" / "bin" / "python"
    return venv if venv.is_file() else Path(sys.executable)


def llmpipe_cmd(overrides: list[str], job_dir: Path, cache_root: Path, *, multirun: bool = False) -> list[str]:
    # a sweep's job folders are named by job number: the default (every override) exceeds NAME_MAX here
    where = [f"hydra.sweep.dir={job_dir}", "hydra.sweep.subdir=${hydra.job.num}"] if multirun \
        else [f"hydra.run.dir={job_dir}"]
    return [str(llmpipe_python()), "-m", "llmpipe", *(["-m"] if multirun else []), *overrides,
            f"run.cache_root={cache_root}", *where]


def asset_overrides(assets: Path, device: str) -> list[str]:
    model = "model_gpu" if device == "cuda" else "model"
    extra = GPU_EXTRA if device == "cuda" else []
    return [f"model.name_or_path={assets / model}", f"data.dataset_dir={assets / 'data'}", *extra]


def lf_cmd(lf_venv: Path, yaml_path: Path, *args: str) -> list[str]:
    return [str(Path(lf_venv) / "bin" / "llamafactory-cli"), "train", str(yaml_path), *args]


def lf_env(hf_home: Path) -> dict:
    return {"HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "DISABLE_VERSION_CHECK": "0",
            "TOKENIZERS_PARALLELISM": "false"}


def losses(history: list[dict], key: str = "loss") -> dict[int, float]:
    return {int(h["step"]): float(h[key]) for h in history if key in h and "step" in h}


def llmpipe_result(job_dir: Path) -> dict:
    """train_runtime, loss curve, token counts of a finished llmpipe job (from its lock file)."""
    lock = yaml.safe_load((Path(job_dir) / "llmpipe.lock.yaml").read_text())
    stages = lock["stages"]
    train = next(v for k, v in stages.items() if k == "train" or k.startswith("train"))
    load = next(v for k, v in stages.items() if k == "load" or k.startswith("load"))
    out = Path(train["output"])
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "log_history.json").read_text())
    report = json.loads((Path(load["output"]) / "data_report.json").read_text())
    res = {"train_runtime": metrics.get("train_runtime"), "train_loss": metrics.get("train_loss"),
           "steps": metrics.get("global_step"), "loss": losses(history),
           "stage_seconds": {k: v.get("seconds") for k, v in stages.items()},
           "status": {k: v.get("status") for k, v in stages.items()}}
    pack = report.get("packing", {}).get("train")
    if pack:
        res["rows"] = pack["sequences"]
        res["tokens"] = pack.get("tokens")
    return res


def llmpipe_statuses(job_dir: Path) -> dict:
    lock = yaml.safe_load((Path(job_dir) / "llmpipe.lock.yaml").read_text())
    return {k: v.get("status") for k, v in lock["stages"].items()}


def lf_result(out_dir: Path, batch: int) -> dict:
    """train_runtime, loss curve and (packing) row count of a finished LLaMA-Factory run."""
    res_all = json.loads((Path(out_dir) / "all_results.json").read_text())
    state = json.loads((Path(out_dir) / "trainer_state.json").read_text())
    steps = state.get("global_step")
    epoch = res_all.get("epoch") or state.get("epoch")
    res = {"train_runtime": res_all.get("train_runtime"), "train_loss": res_all.get("train_loss"), "steps": steps,
           "loss": losses(state.get("log_history", [])), "lf_effective_tok_s": res_all.get("effective_tokens_per_sec")}
    if epoch:
        res["rows"] = round(steps * batch / epoch)   # the epoch fraction gives the number of (packed) rows
    return res
