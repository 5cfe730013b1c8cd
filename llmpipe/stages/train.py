"""train: run the training stage named by train.stage on the loaded data, starting from the initial adapter
(LoRA) or the base model (freeze/full). Checkpoints go to the stage's work folder, so a killed run resumes
where it stopped. Publishes: adapter/ (LoRA) or model/ (freeze/full), metrics.json, log_history.json,
loss.png (train.plot_loss)."""
from __future__ import annotations

from llmpipe.stages.base import StageContext

# train.stage -> "module:function" implementing it (imported only when that stage runs)
TRAINERS = {
    "pt": "llmpipe.training.causal:train_causal",
    "sft": "llmpipe.training.causal:train_causal",
    "rm": "llmpipe.training.reward:train_rm",
    "dpo": "llmpipe.training.preference:train_dpo",
    "kto": "llmpipe.training.kto:train_kto",
    "ppo": "llmpipe.training.ppo:train_ppo",
}


class StageNotAvailable(Exception):
    pass


def run(ctx: StageContext) -> dict:
    import importlib

    stage = ctx.obj.train.stage
    target = TRAINERS.get(stage)
    if target is None:
        raise StageNotAvailable(f"train.stage={stage} has no trainer in this build (available: {sorted(TRAINERS)})")
    module, _, fn = target.partition(":")
    return getattr(importlib.import_module(module), fn)(ctx)
