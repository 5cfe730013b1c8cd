"""train.stage=kto: Kahneman-Tversky optimisation with ``trl.KTOTrainer`` on the load stage's unpaired
{prompt, completion, label} rows; ``pref.beta``, ``pref.kto_chosen_weight`` / ``pref.kto_rejected_weight``
(TRL's desirable/undesirable weights), ``pref.ftx`` is refused pre-flight (TRL's KTO has no SFT term) — see
llmpipe.config.rules.preference. The reference model is llmpipe.training.reference's, or its log-probs come
from the reference stage (llmpipe.training.ref_logprobs).

Held-out metrics: TRL's (``eval_rewards/chosen``, ``eval_rewards/rejected``, ``eval_rewards/margins``, ``eval_kl``)
and ``eval_reward_accuracy``: the share of (desirable, undesirable) pairs of held-out examples whose desirable
one gets the higher implicit reward beta * log(pi/pi_ref) — the ranking accuracy (ROC AUC) of the implicit
reward, 0.5 by chance and for the untrained policy (all rewards 0, ties count half).
"""
from __future__ import annotations

from typing import Any, Sequence

from llmpipe.config.train_stages import implements
from llmpipe.training.job import TrainJob


def ranking_accuracy(rewards: Sequence[float], labels: Sequence[bool]) -> float:
    """P(reward of a desirable example > reward of an undesirable one), ties counting half."""
    pos = [r for r, y in zip(rewards, labels) if y]
    neg = [r for r, y in zip(rewards, labels) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def implicit_rewards(trainer) -> tuple[list[float], list[bool]]:
    """beta * (log pi(y|x) - log pi_ref(y|x)) of every held-out example, with its label."""
    import torch
    from accelerate.utils import is_peft_model
    from trl.trainer.utils import use_adapter

    model = trainer.model
    was_training = model.training
    model.eval()
    rewards: list[float] = []
    labels: list[bool] = []

    def logps(m, batch):
        labels_ = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        images = {k: batch[k] for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids") if k in batch}
        out = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels_,
                use_cache=False, fused_lm_head=True, **images)
        return out.log_probs[:, -(batch["input_ids"].size(1) - 1):].sum(-1)

    try:
        with torch.no_grad():
            for batch in trainer.get_eval_dataloader():
                batch = trainer._prepare_inputs(batch)
                policy = logps(model, batch)
                if "ref_logps" in batch:   # precomputed by the reference stage
                    ref = batch["ref_logps"].to(policy.device)
                elif is_peft_model(model) and trainer.ref_model is None:
                    unwrapped = trainer.accelerator.unwrap_model(model)
                    with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                        ref = logps(model, batch)
                else:
                    ref = logps(trainer.ref_model, batch)
                rewards += (trainer.beta * (policy - ref)).float().tolist()
                labels += [bool(x) for x in batch["label"].tolist()]
    finally:
        model.train(was_training)
    return rewards, labels


def accuracy_metrics(trainer) -> dict[str, Any]:
    rewards, labels = implicit_rewards(trainer)
    return {"eval_reward_accuracy": ranking_accuracy(rewards, labels)}


@implements("kto")
def train_kto(ctx: TrainJob) -> dict:
    from trl import KTOConfig, KTOTrainer

    from llmpipe.data.published import open_published, read_source
    from llmpipe.training.causal import load_saved_tokenizer, prepare_model
    from llmpipe.training.pref_common import finish, trainer_for, trl_config
    from llmpipe.training.reference import load_reference

    cfg = ctx.obj
    p = cfg.pref
    load_dir = ctx.load_dir
    tokenizer = load_saved_tokenizer(load_dir)
    train_ds, eval_ds = open_published(load_dir)
    trainer_cls, ref = KTOTrainer, None
    if ctx.reference_dir is not None:   # the reference stage's log-probs: no reference model in this stage
        from llmpipe.training.ref_logprobs import reading_trainer

        trainer_cls = reading_trainer(KTOTrainer, ctx.reference_dir)
        ctx.log(f"reference log-probs from the reference stage ({ctx.reference_dir.name})")
    else:
        ref = load_reference(cfg, read_source(load_dir), tokenizer, ctx.cache_root, ctx.log)
    model = prepare_model(ctx)
    args = trl_config(ctx, KTOConfig, eval_ds is not None, beta=p.beta, desirable_weight=p.kto_chosen_weight,
                      undesirable_weight=p.kto_rejected_weight,
                      precompute_ref_log_probs=ctx.reference_dir is not None)
    # image rows (llmpipe.training.mm_preference): pixel values in the batch
    from llmpipe.training.mm_preference import adapt

    trainer_cls, train_ds, eval_ds, images = adapt(trainer_cls, args, tokenizer, load_dir, train_ds, eval_ds, ctx.log)
    ctx.log(f"KTO, beta={p.beta}, weights desirable {p.kto_chosen_weight} / undesirable {p.kto_rejected_weight}")
    from llmpipe.training.ref_logprobs import no_model_hash

    with no_model_hash():
        trainer = trainer_for(trainer_cls, ctx, model=model, ref_model=ref, args=args, train_dataset=train_ds,
                              eval_dataset=eval_ds, processing_class=tokenizer, **images)
    return finish(ctx, trainer, tokenizer, eval_ds, "kto", extra=accuracy_metrics)
