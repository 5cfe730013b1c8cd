"""OFT rules: train.finetuning_type=oft (llmpipe.models.oft) and its oft.* options."""
from __future__ import annotations

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import ft_type, get, launch_kind, problem, uses_deepspeed, uses_fsdp, world_size
from llmpipe.config.rules._common import stage as stage_of


@rule("oft-rank-or-block", keys=["oft.rank", "oft.block_size", "train.finetuning_type"],
      bad=[["train.finetuning_type=oft", "oft.rank=4"], ["train.finetuning_type=oft", "oft.block_size=0"]],
      good=[["train.finetuning_type=oft"], ["train.finetuning_type=oft", "oft.rank=4", "oft.block_size=0"]])
def rank_or_block(cfg, env):
    """PEFT's OFT sizes its blocks from one of the two: the number of blocks (oft.rank) or their size
    (oft.block_size); exactly one must be set, the other 0."""
    if ft_type(cfg) != "oft":
        return
    rank, block = get(cfg, "oft.rank", 0), get(cfg, "oft.block_size", 32)
    if (rank > 0) == (block > 0):
        yield problem("oft-rank-or-block", "oft.rank + oft.block_size", f"{rank}, {block}",
                      "OFT needs exactly one of the number of blocks (oft.rank) and their size (oft.block_size)",
                      "oft.rank=0 with oft.block_size > 0, or oft.rank > 0 with oft.block_size=0",
                      f"oft.block_size=0 (blocks counted by oft.rank={rank}), or oft.rank=0" if rank > 0
                      else "oft.block_size=32")


@rule("oft-stage", keys=["train.finetuning_type", "train.stage"],
      bad=[["train.finetuning_type=oft", "train.stage=rm", "data.dataset=demo_pref"]],
      good=[["train.finetuning_type=oft"], ["train.finetuning_type=oft", "train.stage=dpo", "data.dataset=demo_pref"]])
def oft_stage(cfg, env):
    """OFT trains pt, sft, dpo and kto models; a reward model (rm) and PPO's policy/value pair save and reload
    adapters of their own kind (LoRA or the full model)."""
    st = stage_of(cfg)
    if ft_type(cfg) == "oft" and st in ("rm", "ppo"):
        yield problem("oft-stage", "train.finetuning_type", "oft", f"train.stage={st} does not train OFT adapters",
                      "OFT with train.stage=pt, sft, dpo or kto", "train.finetuning_type=lora")


@rule("oft-single-process", keys=["train.finetuning_type", "launch.nproc_per_node", "launch.deepspeed", "launch.fsdp"],
      bad=[["train.finetuning_type=oft", "launch=ddp"], ["train.finetuning_type=oft", "launch=deepspeed_z2"]],
      good=[["train.finetuning_type=oft"], ["launch=ddp"]],
      env={"gpu_count": 2, "available_packages": frozenset({"deepspeed"})})
def oft_single_process(cfg, env):
    """OFT's save merges the adapters into the model in the training process, which llmpipe does for one process
    only (the gathered save of several ranks would write the adapter alone as the model)."""
    if ft_type(cfg) != "oft":
        return
    if world_size(cfg) > 1 or uses_deepspeed(cfg) or uses_fsdp(cfg):
        yield problem("oft-single-process", "train.finetuning_type", "oft",
                      f"OFT training is single-process in llmpipe (launch.kind={launch_kind(cfg)}, "
                      f"{world_size(cfg)} process(es))", "OFT with launch=local",
                      "launch=local, or train.finetuning_type=lora for distributed adapter training")


@rule("oft-quantized", keys=["train.finetuning_type", "quantization.method", "quantization.bit"],
      bad=[["train.finetuning_type=oft", "quantization.method=eetq", "quantization.bit=8"],
           ["train.finetuning_type=oft", "quantization.method=hqq", "quantization.bit=4"]],
      good=[["train.finetuning_type=oft", "quantization=bnb4"], ["train.finetuning_type=oft", "quantization.method=hqq",
                                                                  "quantization.bit=4", "oft.target='q_proj,v_proj'"]],
      env={"gpu_count": 1, "available_packages": frozenset({"eetq", "bitsandbytes", "hqq"})})
def oft_quantized(cfg, env):
    """QOFT: PEFT puts OFT on bitsandbytes (4/8-bit) and HQQ layers (with HQQ the targets are named: oft.target=all
    looks for torch.nn.Linear layers, which HQQ has replaced); EETQ layers are forward-only in PEFT's OFT, so
    adapters on them could not be merged."""
    if ft_type(cfg) == "oft" and get(cfg, "quantization.bit") is not None and get(cfg, "quantization.method") == "hqq" \
            and list(get(cfg, "oft.target", ["all"]) or ["all"]) == ["all"]:
        yield problem("oft-quantized", "oft.target", "all", "oft.target=all finds the model's torch.nn.Linear layers,"
                      " and HQQ has replaced them with HQQLinear before the adapters are attached",
                      "the layer names with an HQQ base", "oft.target='q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,"
                      "down_proj'")
    if ft_type(cfg) == "oft" and get(cfg, "quantization.bit") is not None and get(cfg, "quantization.method") == "eetq":
        yield problem("oft-quantized", "quantization.method", "eetq", "PEFT treats EETQ layers as forward-only: OFT"
                      " adapters on them cannot be merged into the model llmpipe's OFT saves",
                      "bnb or hqq with train.finetuning_type=oft", "quantization.method=bnb")
