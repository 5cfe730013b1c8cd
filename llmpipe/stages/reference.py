"""reference: the reference log-probabilities of every train and eval row of a dpo/kto step, computed once
with the reference model (batched, no gradients) and published for the train stage, which then never runs
the reference model. Its fingerprint covers what the log-probs depend on — the load stage (model, tokenized
data, template, cutoff_len) and the reference settings — not pref.beta, the loss, lora.* or the learning rate,
so a sweep over those and a re-run with a new beta reuse it. Whether a run gets this stage is decided by the
plan (llmpipe.config.rules.reference_plan). Publishes: logps/<split>/ (datasets folders), reference.json."""
from __future__ import annotations

from llmpipe.stages.base import StageContext


def run(ctx: StageContext) -> dict:
    from llmpipe.training.job import TrainJob
    from llmpipe.training.ref_compute import compute

    job = TrainJob(name=ctx.node_id, obj=ctx.obj, load_dir=ctx.input("load"), out=ctx.out, work=ctx.work,
                   cache_root=ctx.cache_root, job_dir=ctx.job_dir, log=ctx.log, waiters=ctx.waiters)
    return compute(job)
