"""Fine-tuning method rules: which options belong to LoRA, freeze and full training."""
from __future__ import annotations

from llmpipe.config.rules._common import adapters, ft_type, get, problem, stage
from llmpipe.config.validate import rule

LORA_ONLY = (
    ("lora.loraplus_lr_ratio", "LoRA+ learning-rate ratio", None),
    ("lora.use_rslora", "rank-stabilised LoRA scaling", False),
    ("lora.use_dora", "DoRA", False),
    ("lora.pissa_init", "PiSSA initialisation", False),
    ("lora.create_new_adapter", "a new adapter on top of loaded ones", False),
)


@rule("ft-adapters-need-lora", keys=["model.adapter_name_or_path", "train.finetuning_type"],
      bad=[["model.adapter_name_or_path=llmpipe-test/cached", "train.finetuning_type=full"],
           ["model.adapter_name_or_path=llmpipe-test/cached", "train.finetuning_type=freeze"]],
      good=[["model.adapter_name_or_path=llmpipe-test/cached", "train.finetuning_type=lora"],
            ["train.finetuning_type=full"]])
def adapters_need_lora(cfg, env):
    """Loading LoRA adapters only makes sense when the run itself is LoRA."""
    if adapters(cfg) and ft_type(cfg) != "lora":
        yield problem("ft-adapters-need-lora", "model.adapter_name_or_path", get(cfg, "model.adapter_name_or_path"),
                      f"adapters are loaded and resumed by LoRA runs only; train.finetuning_type={ft_type(cfg)}",
                      "train.finetuning_type=lora, or no adapters",
                      "train.finetuning_type=lora, or merge the adapters into a model first and load that")


@rule("ft-lora-options", keys=[k for k, _, _ in LORA_ONLY] + ["train.finetuning_type"],
      bad=[["lora=plus", "train.finetuning_type=full"], ["lora=dora", "train.finetuning_type=freeze"],
           ["lora=rslora", "train.finetuning_type=full"], ["lora=pissa", "train.finetuning_type=full"]],
      good=[["lora=plus"], ["lora=dora"], ["lora=rslora"], ["train.finetuning_type=full"]])
def lora_options(cfg, env):
    """LoRA+, rsLoRA, DoRA, PiSSA and new adapters are LoRA variants; they are meaningless for full/freeze."""
    ft = ft_type(cfg)
    if ft == "lora":
        return
    for key, what, off in LORA_ONLY:
        value = get(cfg, key)
        if value not in (None, False):
            yield problem("ft-lora-options", key, value, f"{what} is a LoRA option but train.finetuning_type={ft}",
                          "LoRA options with train.finetuning_type=lora only",
                          f"train.finetuning_type=lora, or {key}={'null' if off is None else 'false'}")


@rule("ft-llama-pro", keys=["freeze.use_llama_pro", "train.finetuning_type"],
      bad=[["freeze.use_llama_pro=true", "train.finetuning_type=full"]],
      good=[["freeze.use_llama_pro=true", "train.finetuning_type=freeze"],
            ["freeze.use_llama_pro=true", "train.finetuning_type=lora"]])
def llama_pro(cfg, env):
    """LLaMA Pro trains the expanded blocks only: freeze or LoRA training, not full."""
    if get(cfg, "freeze.use_llama_pro") and ft_type(cfg) == "full":
        yield problem("ft-llama-pro", "freeze.use_llama_pro", True,
                      "trains only the expanded blocks, which full fine-tuning contradicts",
                      "train.finetuning_type=freeze or lora", "train.finetuning_type=freeze")


@rule("ft-pissa-stage", keys=["lora.pissa_init", "train.stage", "pref.loss"],
      bad=[["lora=pissa", "train.stage=kto", "data.dataset=demo_kto"],
           ["lora=pissa", "train.stage=dpo", "data.dataset=demo_pref"],
           ["lora=pissa", "train.stage=ppo", "ppo.reward_model=llmpipe-test/cached"]],
      good=[["lora=pissa"], ["lora=pissa", "train.stage=dpo", "data.dataset=demo_pref", "pref.loss=simpo"]])
def pissa_stage(cfg, env):
    """PiSSA rewrites the base weights, so 'the policy with adapters off' is no longer the reference model."""
    if not get(cfg, "lora.pissa_init"):
        return
    st = stage(cfg)
    ref_free = st == "dpo" and get(cfg, "pref.loss") in ("orpo", "simpo")
    if st in ("ppo", "kto", "dpo") and not ref_free:
        yield problem("ft-pissa-stage", "lora.pissa_init", True,
                      f"train.stage={st} uses the base model as reference, and PiSSA changes the base weights",
                      "PiSSA with pt, sft, rm, or dpo with pref.loss=orpo/simpo (no reference model)",
                      "lora.pissa_init=false (or lora=default)")
