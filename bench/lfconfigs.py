"""LLaMA-Factory 0.9.5 configs of the benchmark (written fresh for each harness run; our own, not LF's).

``training(name, assets, out_dir)`` gives the YAML mapping of one training run: ``sft_lora`` (matched
settings), ``sft_lora_packing`` (LF's own packing run), ``dpo_lora``; ``INVALID`` the configs that are wrong
on purpose (each is sft_lora with one change), mirrored by the llmpipe overrides in bench.cases.
"""
from __future__ import annotations

from pathlib import Path

# the shared hyper-parameters (LF's YAML keys); bench.cases maps the same values onto llmpipe's config
COMMON = dict(
    stage="sft", do_train=True, finetuning_type="lora", lora_rank=8, lora_target="all",
    template="chatml", cutoff_len=256, overwrite_cache=True, dataloader_num_workers=0,
    logging_steps=5, save_strategy="no", plot_loss=False, overwrite_output_dir=True, report_to="none",
    per_device_train_batch_size=4, gradient_accumulation_steps=1, learning_rate=1.0e-4, max_steps=30,
    lr_scheduler_type="linear", warmup_steps=0, bf16=False, fp16=False, pure_bf16=False, seed=42,
    include_effective_tokens_per_second=True, trust_remote_code=False,
)
DPO = dict(stage="dpo", dataset="bench_pref", pref_beta=0.1, pref_loss="sigmoid", max_steps=20)

# name -> the one change that makes sft_lora invalid (LF's error surfaces after loading data or the model)
INVALID = {
    "typo_key": {"learning_rat": 1.0e-4},
    "bad_template": {"template": "chatmlx"},
    "dpo_on_sft_data": {"stage": "dpo"},
    "quant_bit3": {"quantization_bit": 3},
    "lora_rank_neg1": {"lora_rank": -1},
}


def training(name: str, assets: Path, out_dir: Path, **over) -> dict:
    cfg = dict(COMMON, model_name_or_path=str(Path(assets) / "model"), dataset_dir=str(Path(assets) / "data"),
               dataset="bench_sft", output_dir=str(out_dir))
    if name == "sft_lora":
        cfg["packing"] = False
    elif name == "sft_lora_packing":
        cfg.update(packing=True, neat_packing=False)
    elif name == "dpo_lora":
        cfg.update(DPO)
    elif name in INVALID:
        cfg["packing"] = False
        cfg.update(INVALID[name])
    else:
        raise KeyError(f"no LLaMA-Factory config named {name!r}")
    cfg.update(over)
    return cfg


def to_yaml(cfg: dict) -> str:
    """Flat mapping -> YAML (scalars only; strings quoted when YAML would read them otherwise)."""
    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        s = str(v)
        return s if s.replace("_", "").replace("/", "").replace("-", "").replace(".", "").isalnum() \
            and s.lower() not in ("yes", "no", "true", "false", "null", "on", "off") else f'"{s}"'
    return "".join(f"{k}: {scalar(v)}\n" for k, v in cfg.items())


def write(name: str, assets: Path, out_dir: Path, dest: Path, **over) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(to_yaml(training(name, assets, out_dir, **over)))
    return dest
