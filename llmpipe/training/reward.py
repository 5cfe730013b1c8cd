"""train.stage=rm: a reward model trained with ``trl.RewardTrainer`` (Bradley-Terry loss) on the load stage's
{prompt, chosen, rejected} rows. The model is the train stage's usual one (LoRA / freeze / full, loading options,
quantization) with a scalar score head on its body (llmpipe.training.reward_model); it is saved in the standard
layout — a SEQ_CLS adapter with the score head (LoRA) or a ``...ForSequenceClassification`` model — so that
``load_reward_model(<train output>)`` scores text and PPO can use it (``ppo.reward_model``).

Held-out metrics: ``eval_reward_accuracy`` (share of pairs whose chosen response scores higher, TRL's
``eval_accuracy``) and ``eval_reward_margin`` (mean score difference, TRL's ``eval_margin``), before and after.
"""
from __future__ import annotations

from llmpipe.config.train_stages import implements
from llmpipe.training.job import TrainJob


@implements("rm")
def train_rm(ctx: TrainJob) -> dict:
    from trl import RewardConfig, RewardTrainer

    from llmpipe.data.published import open_published
    from llmpipe.training.causal import load_saved_tokenizer, prepare_model
    from llmpipe.training.pref_common import finish, trainer_for, trl_config
    from llmpipe.training.reward_model import as_reward_model

    cfg = ctx.obj
    load_dir = ctx.load_dir
    tokenizer = load_saved_tokenizer(load_dir)
    train_ds, eval_ds = open_published(load_dir)
    model = as_reward_model(prepare_model(ctx), cfg.train.seed)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = trl_config(ctx, RewardConfig, eval_ds is not None)
    ctx.log(f"reward model: {type(model).__name__} with a scalar score head")
    trainer = trainer_for(RewardTrainer, ctx, model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                          processing_class=tokenizer)
    return finish(ctx, trainer, tokenizer, eval_ds, "rm")
