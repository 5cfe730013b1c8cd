"""SFT loss rules: train.use_dft_loss / use_asft_loss / use_eaft_loss (llmpipe.training.sft_losses)."""
from __future__ import annotations

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import ft_type, get, launch_kind, problem, uses_fsdp, zero_stage
from llmpipe.config.rules._common import stage as stage_of

LOSSES = ("train.use_dft_loss", "train.use_asft_loss", "train.use_eaft_loss")


def _on(cfg) -> list[str]:
    return [k for k in LOSSES if get(cfg, k)]


@rule("sft-loss-stage", keys=[*LOSSES, "train.stage"],
      bad=[["train.stage=dpo", "data.dataset=demo_pref", "train.use_dft_loss=true"],
           ["train.stage=pt", "data.dataset=demo_pt", "train.use_eaft_loss=true"]],
      good=[["train.use_dft_loss=true"], ["train.use_asft_loss=true"], ["train.use_eaft_loss=true"]])
def loss_stage(cfg, env):
    """The DFT, ASFT and EAFT losses re-weight the token cross-entropy of supervised fine-tuning; the other stages
    have losses of their own (pairwise, reward, PPO) or, for pt, are not what these losses were made for."""
    st = stage_of(cfg)
    if st == "sft":
        return
    for key in _on(cfg):
        yield problem("sft-loss-stage", key, True, f"is an SFT token loss and train.stage={st} does not use it",
                      f"{key}=true with train.stage=sft", f"{key}=false, or train.stage=sft")


@rule("sft-loss-one", keys=list(LOSSES),
      bad=[["train.use_dft_loss=true", "train.use_eaft_loss=true"]],
      good=[["train.use_dft_loss=true"]])
def one_loss(cfg, env):
    """At most one of the DFT, ASFT and EAFT losses: each replaces the cross-entropy (ASFT already contains DFT)."""
    on = _on(cfg)
    if len(on) > 1:
        yield problem("sft-loss-one", " + ".join(on), True, "each replaces the token loss; only one can be used",
                      "one of " + ", ".join(LOSSES), " and ".join(f"{k}=false" for k in on[1:]))


@rule("sft-loss-asft-sharded", keys=["train.use_asft_loss", "train.finetuning_type", "launch.deepspeed", "launch.fsdp"],
      bad=[["train.use_asft_loss=true", "train.finetuning_type=full", "launch=deepspeed_z3"]],
      good=[["train.use_asft_loss=true", "train.finetuning_type=full"], ["train.use_asft_loss=true", "launch=deepspeed_z3"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def asft_sharded(cfg, env):
    """ASFT's reference for full/freeze training is a frozen copy of the model taken when training starts, and a
    model sharded by ZeRO-3 or FSDP has no whole weights to copy (LoRA/OFT switch their adapters off instead)."""
    if not get(cfg, "train.use_asft_loss") or ft_type(cfg) in ("lora", "oft"):
        return
    if zero_stage(cfg) == 3 or uses_fsdp(cfg):
        yield problem("sft-loss-asft-sharded", "train.use_asft_loss", True,
                      f"with train.finetuning_type={ft_type(cfg)} the ASFT reference is a copy of the model, which "
                      f"cannot be made of a sharded one (launch.kind={launch_kind(cfg)})",
                      "ASFT with LoRA/OFT, or full/freeze without ZeRO-3/FSDP",
                      "train.finetuning_type=lora, or launch=deepspeed_z2")


@rule("sft-loss-label-smoothing", keys=[*LOSSES, "train.label_smoothing_factor"],
      bad=[["train.use_dft_loss=true", "train.label_smoothing_factor=0.1"]],
      good=[["train.use_dft_loss=true"], ["train.label_smoothing_factor=0.1"]])
def label_smoothing(cfg, env):
    """The Trainer applies label smoothing only to its own cross-entropy; a DFT/ASFT/EAFT loss replaces that
    loss, so the smoothing would be dropped without a word."""
    factor = get(cfg, "train.label_smoothing_factor") or 0.0
    for key in _on(cfg)[:1]:
        if factor > 0:
            yield problem("sft-loss-label-smoothing", "train.label_smoothing_factor", factor,
                          f"smooths the Trainer's own cross-entropy, which {key} replaces",
                          f"train.label_smoothing_factor unset or 0 with {key}",
                          f"train.label_smoothing_factor=null, or {key}=false")
