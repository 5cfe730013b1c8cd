"""The declarations of every stage kind: what each reads. The code that runs them lives in one module per
stage (llmpipe/stages/<name>.py) and is imported only when the stage runs."""
from __future__ import annotations

from llmpipe.stages.base import StageKind, register

# Model-loading options that change what a trained model is.
_MODEL_LOAD = ("model", "quantization")

LOAD = register(StageKind(
    name="load", version="1",
    reads=("model", "data", "train.stage", "train.seed", "train.data_seed", "vision"),
    runner="llmpipe.stages.load:run",
    doc="Resolve the base model and tokenizer, build the built-in model if asked, tokenize the datasets.",
))
ADAPT = register(StageKind(
    name="adapt", version="1",
    reads=("lora", "train.finetuning_type", "train.seed", "train.stage") + _MODEL_LOAD,
    runner="llmpipe.stages.adapt:run",
    doc="Create the initial LoRA adapter (seeded) on the base model.",
))
TRAIN = register(StageKind(
    name="train", version="1",
    reads=("train", "lora", "freeze", "galore", "badam", "pref", "ppo", "launch.kind", "launch.nproc_per_node",
           "launch.nnodes", "launch.deepspeed", "launch.fsdp", "launch.fsdp_config") + _MODEL_LOAD,
    runner="llmpipe.stages.train:run",
    doc="Train (pt/sft/rm/dpo/kto/ppo) from the loaded data and the initial adapter; checkpoints resume.",
))
MERGE = register(StageKind(
    name="merge", version="1",
    reads=("train.finetuning_type", "export.device", "infer.dtype"),
    runner="llmpipe.stages.merge:run",
    doc="Merge LoRA adapters into the base model and save safetensors that reload.",
))
EXPORT = register(StageKind(
    name="export", version="1",
    reads=("export.size", "export.legacy_format"),
    runner="llmpipe.stages.export:run",
    cached=False,
    doc="Copy the final model into export.dir (sharded as asked), with tokenizer and a model card.",
))
