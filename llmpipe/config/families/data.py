"""Data family (``data.*``): datasets, chat template, truncation, mixing, packing and preprocessing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import OptionalListFlag, param


@dataclass
class DataConfig:
    template: Optional[str] = param(
        None, "Chat template name (e.g. qwen, llama3); unset = the tokenizer's own chat template.", seed="template",
    )
    dataset: OptionalListFlag = param(
        None, "Training dataset name(s) from dataset_info.json, comma-separated.", seed="dataset", list_sep=",",
    )
    eval_dataset: OptionalListFlag = param(
        None, "Evaluation dataset name(s), comma-separated.", seed="eval_dataset", list_sep=",",
    )
    dataset_dir: str = param("data", "Folder holding dataset_info.json and the dataset files.", seed="dataset_dir")
    media_dir: Optional[str] = param(
        None, "Folder with the images/videos/audio referenced by the data (default: dataset_dir).", seed="media_dir",
    )
    cutoff_len: int = param(
        2048, "Maximum tokenized length of one example (prompt + response).", seed="cutoff_len", ge=1,
        seed_default=1024,
    )
    train_on_prompt: bool = param(False, "Compute the loss on the prompt too (SFT).", seed="train_on_prompt")
    mask_history: bool = param(
        False, "Train on the last turn only; earlier turns are masked (SFT).", seed="mask_history",
    )
    streaming: bool = param(False, "Stream the dataset instead of loading it (needs train.max_steps).", seed="streaming")
    buffer_size: int = param(16384, "Shuffle buffer size when streaming.", seed="buffer_size", ge=1)
    mix_strategy: str = param(
        "concat", "How several datasets are mixed: concat, or interleave with under-/over-sampling or without"
        " replacement (interleave_once).", seed="mix_strategy",
        choices=("concat", "interleave_under", "interleave_over", "interleave_once"),
    )
    interleave_probs: OptionalListFlag = param(
        None, "Sampling probabilities of the datasets when interleaving, comma-separated.", seed="interleave_probs",
        list_sep=",",
    )
    overwrite_cache: bool = param(
        False, "Re-run preprocessing even when a cached result exists.", seed="overwrite_cache", volatile=True,
    )
    preprocessing_batch_size: int = param(
        1000, "Examples per batch in preprocessing.", seed="preprocessing_batch_size", ge=1,
    )
    preprocessing_num_workers: Optional[int] = param(
        None, "Processes used for preprocessing (unset = in-process).", seed="preprocessing_num_workers", ge=1,
        volatile=True,
    )
    max_samples: Optional[int] = param(
        None, "Truncate every dataset to this many examples (debugging).", seed="max_samples", ge=1,
    )
    eval_num_beams: Optional[int] = param(
        None, "Beams used by generate() during evaluation/prediction.", seed="eval_num_beams", ge=1,
    )
    ignore_pad_token_for_loss: bool = param(
        True, "Ignore padding tokens in the loss.", seed="ignore_pad_token_for_loss",
    )
    val_size: float = param(
        0.0, "Validation split taken from the training data: a ratio in [0,1) or a number of examples (>= 1).",
        seed="val_size", ge=0.0,
    )
    eval_on_each_dataset: bool = param(
        False, "Evaluate every evaluation dataset separately.", seed="eval_on_each_dataset",
    )
    packing: Optional[bool] = param(
        None, "Pack several examples into one sequence; unset = on for stage pt only.", seed="packing",
    )
    neat_packing: bool = param(
        False, "Packing without cross-attention between packed examples (implies packing; SFT).", seed="neat_packing",
    )
    tool_format: Optional[str] = param(None, "Format of function-calling (tool) examples.", seed="tool_format")
    default_system: Optional[str] = param(
        None, "System message replacing the template's default.", seed="default_system",
    )
    enable_thinking: Optional[bool] = param(
        True, "Thinking mode for reasoning templates; unset = mixed (follow the data).", seed="enable_thinking",
    )
    preserve_thinking: bool = param(
        False, "Keep the thought blocks of earlier answers (reasoning templates: inference, and mask_history).",
        seed="preserve_thinking",
    )
    tokenized_path: Optional[str] = param(
        None, "Save (or load, when it exists) the tokenized dataset here.", seed="tokenized_path", volatile=True,
    )
