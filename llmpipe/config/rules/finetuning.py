"""Fine-tuning method rules: which options belong to LoRA, freeze and full training."""
from __future__ import annotations

from llmpipe.config.families.pref import REFERENCE_FREE
from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import adapters, ft_type, get, problem, stage, zero_stage

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
    ref_free = st == "dpo" and get(cfg, "pref.loss") in REFERENCE_FREE
    if st in ("ppo", "kto", "dpo") and not ref_free:
        yield problem("ft-pissa-stage", "lora.pissa_init", True,
                      f"train.stage={st} uses the base model as reference, and PiSSA changes the base weights",
                      "PiSSA with pt, sft, rm, or dpo with pref.loss=orpo/simpo (no reference model)",
                      "lora.pissa_init=false (or lora=default)")


@rule("ft-pissa-convert", keys=["lora.pissa_init", "lora.pissa_convert", "export.dir"],
      bad=[["lora=pissa", "lora.pissa_convert=false", "export.dir=exports/x"]],
      good=[["lora=pissa", "export.dir=exports/x"], ["lora=pissa", "lora.pissa_convert=false"]])
def pissa_convert(cfg, env):
    """Exporting merges the adapter into the original base; an unconverted PiSSA adapter belongs to the residual base."""
    if get(cfg, "lora.pissa_init") and not get(cfg, "lora.pissa_convert") and get(cfg, "export.dir"):
        yield problem("ft-pissa-convert", "lora.pissa_convert", False,
                      "the export merges the adapter into the original base model, but an unconverted PiSSA adapter "
                      "only fits the residual base (the principal components were moved into the adapter)",
                      "lora.pissa_convert=true when exporting a PiSSA run",
                      "lora.pissa_convert=true (saves a plain LoRA adapter of the original base)")


@rule("ft-llama-pro-layers", keys=["freeze.use_llama_pro", "freeze.trainable_layers"],
      bad=[["train.finetuning_type=freeze", "freeze.use_llama_pro=true", "freeze.trainable_layers=-2"]],
      good=[["train.finetuning_type=freeze", "freeze.use_llama_pro=true", "freeze.trainable_layers=2"]])
def llama_pro_layers(cfg, env):
    """With LLaMA Pro, freeze.trainable_layers is the number of new blocks inserted: a positive count."""
    n = get(cfg, "freeze.trainable_layers", 2)
    if get(cfg, "freeze.use_llama_pro") and ft_type(cfg) == "freeze" and n < 1:
        yield problem("ft-llama-pro-layers", "freeze.trainable_layers", n,
                      "is the number of identity blocks LLaMA Pro inserts (one after every N/n-th block)",
                      "a positive count that divides the model's number of blocks", "freeze.trainable_layers=2")


@rule("ft-adapter-options", keys=["model.adapter_folder", "lora.create_new_adapter", "model.adapter_name_or_path"],
      bad=[["model.adapter_folder=sub"], ["lora.create_new_adapter=true"]],
      good=[["model.adapter_folder=sub", "model.adapter_name_or_path=llmpipe-test/cached"],
            ["lora.create_new_adapter=true", "model.adapter_name_or_path=llmpipe-test/cached"]])
def adapter_options(cfg, env):
    """adapter_folder and create_new_adapter describe how model.adapter_name_or_path is loaded; alone they do nothing."""
    if adapters(cfg):
        return
    for key, value in (("model.adapter_folder", get(cfg, "model.adapter_folder")),
                       ("lora.create_new_adapter", get(cfg, "lora.create_new_adapter"))):
        if value:
            yield problem("ft-adapter-options", key, value, "applies to the adapters of model.adapter_name_or_path, "
                          "and none are given", f"{key} together with model.adapter_name_or_path",
                          f"model.adapter_name_or_path=<adapter(s)>, or remove {key}")


@rule("ft-mod-convert", keys=["model.mixture_of_depths", "train.finetuning_type"],
      bad=[["model.mixture_of_depths=convert"], ["model.mixture_of_depths=convert", "train.finetuning_type=freeze"]],
      good=[["model.mixture_of_depths=convert", "train.finetuning_type=full"], ["model.mixture_of_depths=load"]],
      env={"available_packages": frozenset({"MoD"})})
def mod_convert(cfg, env):
    """Converting to mixture-of-depths adds new router weights, which only full fine-tuning trains and saves."""
    if get(cfg, "model.mixture_of_depths") == "convert" and ft_type(cfg) != "full":
        yield problem("ft-mod-convert", "model.mixture_of_depths", "convert",
                      f"adds untrained router weights that train.finetuning_type={ft_type(cfg)} would neither train "
                      "nor save", "model.mixture_of_depths=convert with train.finetuning_type=full",
                      "train.finetuning_type=full")


@rule("ft-unsloth-lora", keys=["model.use_unsloth", "train.finetuning_type"],
      bad=[["model.use_unsloth=true", "train.finetuning_type=full"]],
      good=[["model.use_unsloth=true"]],
      env={"gpu_count": 1, "available_packages": frozenset({"unsloth"})})
def unsloth_lora(cfg, env):
    """llmpipe runs Unsloth for LoRA training (its fast path); freeze and full training use the plain model."""
    if get(cfg, "model.use_unsloth") and ft_type(cfg) != "lora":
        yield problem("ft-unsloth-lora", "model.use_unsloth", True, f"is implemented for LoRA training only, and "
                      f"train.finetuning_type={ft_type(cfg)}", "model.use_unsloth with train.finetuning_type=lora",
                      "train.finetuning_type=lora, or model.use_unsloth=false")


@rule("ft-zero3-base-changes", keys=["lora.pissa_init", "model.adapter_name_or_path", "lora.create_new_adapter",
                                     "launch.deepspeed"],
      bad=[["lora=pissa", "launch=deepspeed_z3"],
           ["model.adapter_name_or_path='llmpipe-test/a,llmpipe-test/b'", "launch=deepspeed_z3"]],
      good=[["lora=pissa", "launch=deepspeed_z2"], ["model.adapter_name_or_path=llmpipe-test/a", "launch=deepspeed_z3"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def zero3_base_changes(cfg, env):
    """Under ZeRO-3 every rank holds a shard of each weight, so the base cannot be rewritten while it loads."""
    if zero_stage(cfg) != 3:
        return
    if get(cfg, "lora.pissa_init"):
        yield problem("ft-zero3-base-changes", "lora.pissa_init", True, "PiSSA subtracts the adapter from the base "
                      "weights, which DeepSpeed ZeRO-3 has partitioned across ranks",
                      "PiSSA with launch=ddp or deepspeed_z2", "launch=deepspeed_z2")
    merged, _ = _merged_adapters(cfg)
    if merged:
        yield problem("ft-zero3-base-changes", "model.adapter_name_or_path", get(cfg, "model.adapter_name_or_path"),
                      f"{len(merged)} adapter(s) would be merged into base weights that DeepSpeed ZeRO-3 has "
                      "partitioned across ranks", "a single resumed adapter under ZeRO-3",
                      "merge the adapters first (export) and train from the merged model, or launch=deepspeed_z2")


def _merged_adapters(cfg) -> tuple[list[str], str | None]:
    refs = adapters(cfg)
    if not refs or get(cfg, "lora.create_new_adapter") or ft_type(cfg) != "lora":
        return refs, None
    return refs[:-1], refs[-1]
