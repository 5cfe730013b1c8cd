"""Cross-field pre-flight rules on the configuration alone. Importing this package registers every rule (one
module per topic) in llmpipe.config.rulebook; rules that read the data's files live in llmpipe.data.rules."""
from __future__ import annotations

from llmpipe.config.rules import (  # noqa: F401  (each module registers its rules on import)
    data,
    distributed,
    export,
    finetuning,
    fp8,
    inference,
    model,
    oft,
    optimizers,
    ppo,
    preference,
    quantization,
    ray,
    run,
    safety,
    sft_losses,
    swanlab,
    trainer_fields,
    training,
)
