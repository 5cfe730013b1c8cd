"""Generate family (``generate.*``): decoding settings for prediction, chat and serving."""
from __future__ import annotations

from dataclasses import dataclass

from llmpipe.config.meta import param


@dataclass
class GenerateConfig:
    do_sample: bool = param(True, "Sample; false = greedy (or beam) decoding.", seed="do_sample")
    temperature: float = param(0.95, "Sampling temperature.", seed="temperature", gt=0.0)
    top_p: float = param(0.7, "Nucleus sampling: keep the smallest token set with probability >= top_p.", seed="top_p",
                         gt=0.0, le=1.0)
    top_k: int = param(50, "Top-k sampling: keep the k most likely tokens (0 = off).", seed="top_k", ge=0)
    num_beams: int = param(1, "Beams of beam search (1 = no beam search).", seed="num_beams", ge=1)
    max_length: int = param(
        1024, "Maximum total length (prompt + generated); max_new_tokens takes precedence.", seed="max_length", ge=1,
    )
    max_new_tokens: int = param(1024, "Maximum generated tokens, prompt not counted.", seed="max_new_tokens", ge=1)
    repetition_penalty: float = param(
        1.0, "Penalty for repeated tokens (1.0 = none).", seed="repetition_penalty", gt=0.0,
    )
    length_penalty: float = param(
        1.0, "Exponential length penalty of beam search (> 1 favours longer outputs).", seed="length_penalty",
    )
    skip_special_tokens: bool = param(
        True, "Drop special tokens when decoding the output.", seed="skip_special_tokens",
    )
