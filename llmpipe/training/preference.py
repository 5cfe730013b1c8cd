"""train.stage=dpo: pairwise preference optimisation on the load stage's {prompt, chosen, rejected} rows, with
the real TRL trainers, picked by ``pref.loss``:

- sigmoid (DPO), hinge, ipo and TRL's further pairwise losses (robust, exo_pair, nca_pair, bco_pair,
  sppo_hard, aot, aot_unpaired, apo_zero, apo_down, discopop, sigmoid_norm): ``trl.DPOTrainer``;
  ``pref.ftx`` adds TRL's "sft" loss term and ``pref.bco_weight`` its "bco_pair" term (``loss_weights``),
  ``pref.dpo_label_smoothing`` is its label_smoothing (cDPO/robust/exo_pair), ``pref.ld_alpha`` its ld_alpha;
- kto_pair: the paired KTO loss (llmpipe.training.kto_pair) on the same trainer;
- orpo: ``trl.experimental.orpo.ORPOTrainer`` (pref.beta is ORPO's lambda; its NLL term is built in);
- simpo: ``trl.experimental.cpo.CPOTrainer`` with loss_type=simpo, pref.simpo_gamma, and pref.ftx as the
  behaviour-cloning weight cpo_alpha.

The reference model (dpo losses) is llmpipe.training.reference's; orpo and simpo have none. With a reference
stage in the plan (llmpipe.training.ref_logprobs) its published log-probs replace the reference model, which
is then not loaded. An unknown loss is refused before TRL's first step would refuse it.
"""
from __future__ import annotations

from typing import Any

from llmpipe.config.families.pref import LOSSES, REFERENCE_FREE
from llmpipe.config.train_stages import implements
from llmpipe.errors import UserError
from llmpipe.training.job import TrainJob

# pref.loss values (llmpipe.config.families.pref) and how they train: kto_pair has its own trainer, orpo/simpo
# theirs (no reference model); every other one is a loss of trl.DPOTrainer (1.16), passed through by name.
DPO_LOSSES = tuple(loss for loss in LOSSES if loss != "kto_pair" and loss not in REFERENCE_FREE)


class PreferenceError(UserError):
    """A preference-training setting cannot be honoured (message says why and what to do)."""


def dpo_loss_terms(pref: Any) -> tuple[list[str], list[float]]:
    """TRL loss_type / loss_weights for a DPOTrainer loss plus the ftx (sft) and bco_weight (bco_pair) terms."""
    types, weights = [pref.loss], [1.0]
    if pref.ftx > 0:
        types, weights = types + ["sft"], weights + [float(pref.ftx)]
    if pref.bco_weight > 0 and pref.loss != "bco_pair":
        types, weights = types + ["bco_pair"], weights + [float(pref.bco_weight)]
    return types, weights


def trainer_setup(cfg: Any) -> tuple[type, type, dict[str, Any]]:
    """(trainer class, TRL config class, config keywords) for pref.loss."""
    p = cfg.pref
    if p.loss not in LOSSES:
        raise PreferenceError(f"pref.loss={p.loss}: not a loss of this build; allowed: {', '.join(LOSSES)}")
    if p.loss == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer, ORPOConfig, {"beta": p.beta}
    if p.loss == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOTrainer, CPOConfig, {"loss_type": "simpo", "beta": p.beta, "simpo_gamma": p.simpo_gamma,
                                       "cpo_alpha": p.ftx, "label_smoothing": p.dpo_label_smoothing}
    from trl import DPOConfig, DPOTrainer

    kw: dict[str, Any] = {"beta": p.beta, "label_smoothing": p.dpo_label_smoothing, "ld_alpha": p.ld_alpha,
                          "precompute_ref_log_probs": False}
    if p.loss == "kto_pair":
        from llmpipe.training.kto_pair import KtoPairTrainer

        return KtoPairTrainer, DPOConfig, {**kw, "loss_type": ["sigmoid"]}   # loss computed by KtoPairTrainer
    types, weights = dpo_loss_terms(p)
    return DPOTrainer, DPOConfig, {**kw, "loss_type": types, "loss_weights": weights}


def fast_fused_head(cfg, model, images: bool, log) -> bool:
    """TRL's fused LM head scores the completion positions only, and text rows run padding-free where the model
    isolates the examples of a row (llmpipe.training.padding_free), each pair's prompt once for both answers where
    that is exact (llmpipe.training.shared_prompts): the same log-probs without the work on prompt and pad
    positions. For the policy here and for the reference stage's model (llmpipe.training.ref_compute).
    Whether the rows run padding-free."""
    from llmpipe.training.lm_head import score_label_positions_only
    from llmpipe.training.padding_free import decide, decide_shared, unpad_model_calls

    score_label_positions_only()
    if images or not decide(cfg, model, log):
        return False
    unpad_model_calls(model, share_prompts=decide_shared(model, log))
    return True


@implements("dpo")
def train_dpo(ctx: TrainJob) -> dict:
    from llmpipe.data.published import open_published, read_source
    from llmpipe.training.causal import load_saved_tokenizer, prepare_model
    from llmpipe.training.pref_common import finish, trainer_for, trl_config
    from llmpipe.training.reference import load_reference

    cfg = ctx.obj
    trainer_cls, config_cls, kw = trainer_setup(cfg)
    load_dir = ctx.load_dir
    tokenizer = load_saved_tokenizer(load_dir)
    train_ds, eval_ds = open_published(load_dir)
    extra: dict[str, Any] = {}
    if ctx.reference_dir is not None:   # the reference stage's log-probs: no reference model in this stage
        from llmpipe.training.ref_logprobs import reading_trainer

        trainer_cls, kw = reading_trainer(trainer_cls, ctx.reference_dir), {**kw, "precompute_ref_log_probs": True}
        ctx.log(f"reference log-probs from the reference stage ({ctx.reference_dir.name})")
    elif cfg.pref.loss not in REFERENCE_FREE:   # first: a reference model that does not fit fails before training
        extra["ref_model"] = load_reference(cfg, read_source(load_dir), tokenizer, ctx.cache_root, ctx.log)
    model = prepare_model(ctx)
    args = trl_config(ctx, config_cls, eval_ds is not None, **kw)
    # image rows (llmpipe.training.mm_preference): pixel values in the batch
    from llmpipe.training.mm_preference import adapt

    trainer_cls, train_ds, eval_ds, images = adapt(trainer_cls, args, tokenizer, load_dir, train_ds, eval_ds, ctx.log)
    extra.update(images)
    if cfg.pref.loss == "kto_pair":
        extra["ftx"] = cfg.pref.ftx
    if cfg.pref.loss not in REFERENCE_FREE:   # TRL's DPOTrainer pads; its fused-LM-head calls run unpadded
        from llmpipe.training.padding_free import unpad_reference

        if fast_fused_head(cfg, model, bool(images), ctx.log) and extra.get("ref_model") is not None:
            unpad_reference(extra["ref_model"], ctx.log)
    ctx.log(f"{cfg.pref.loss} loss with {trainer_cls.__name__}, beta={cfg.pref.beta}")
    from llmpipe.training.ref_logprobs import no_model_hash

    with no_model_hash():
        trainer = trainer_for(trainer_cls, ctx, model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                              processing_class=tokenizer, **extra)
    return finish(ctx, trainer, tokenizer, eval_ds, "pairwise")
