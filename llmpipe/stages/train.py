"""train: run the training stage named by train.stage on the loaded data, starting from the initial adapter
(LoRA) or the base model (freeze/full). Checkpoints go to the stage's work folder, so a killed run resumes
where it stopped. Publishes: adapter/ (LoRA) or model/ (freeze/full), metrics.json, log_history.json,
loss.png (train.plot_loss)."""
from __future__ import annotations

from llmpipe.errors import UserError
from llmpipe.stages.base import StageContext


class StageNotAvailable(UserError):
    pass


def run(ctx: StageContext) -> dict:
    from llmpipe.config.train_stages import TRAIN_STAGES, trainer
    from llmpipe.training import trainers  # noqa: F401  (attaches every trainer to its train stage)
    from llmpipe.training.job import TrainJob

    stage = ctx.obj.train.stage
    fn = trainer(stage)
    if fn is None:
        have = sorted(n for n in TRAIN_STAGES if trainer(n) is not None)
        raise StageNotAvailable(f"train.stage={stage} has no trainer in this build (available: {have})")
    job = TrainJob(
        name=ctx.node_id, obj=ctx.obj, load_dir=ctx.input("load"), out=ctx.out, work=ctx.work,
        cache_root=ctx.cache_root, job_dir=ctx.job_dir, adapter_dir=ctx.inputs.get("adapt"),
        reward_dir=ctx.inputs.get("reward"), reference_dir=ctx.inputs.get("reference"), log=ctx.log,
    )
    return fn(job)
