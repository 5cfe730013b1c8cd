"""PPO family (``ppo.*``): PPO optimisation and the reward model (``train.stage=ppo``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import OptionalListFlag, param


@dataclass
class PpoConfig:
    buffer_size: int = param(
        1, "Mini-batches collected into the experience buffer of one PPO step.", seed="ppo_buffer_size", ge=1,
    )
    epochs: int = param(4, "Optimisation epochs per PPO step.", seed="ppo_epochs", ge=1)
    score_norm: bool = param(False, "Normalise the reward scores.", seed="ppo_score_norm")
    target: float = param(6.0, "Target KL of the adaptive KL controller.", seed="ppo_target", gt=0.0)
    whiten_rewards: bool = param(False, "Whiten the rewards before computing advantages.", seed="ppo_whiten_rewards")
    reward_model: Optional[str] = param(
        None, "Reward model: a path/hub id, an adapter (type lora) or an http(s) URL (type api).", seed="reward_model",
    )
    reward_model_adapters: OptionalListFlag = param(
        None, "Adapters of the reward model.", seed="reward_model_adapters", list_sep=",",
    )
    reward_model_quantization_bit: Optional[int] = param(
        None, "Quantize the reward model to this many bits (bitsandbytes).", seed="reward_model_quantization_bit",
        choices=(4, 8),
    )
    reward_model_type: str = param(
        "lora", "Reward model kind: lora (an adapter on the policy; LoRA training only), full (a separate model),"
        " api (an HTTP scorer).", seed="reward_model_type", choices=("lora", "full", "api"),
    )
