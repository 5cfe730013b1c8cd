"""Data rules: registered datasets of the right kind for the stage, template names, splits, mixing,
streaming, and the SFT-only data options."""
from __future__ import annotations

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import evaluates, get, problem, stage


@rule("data-val-size", keys=["data.val_size", "data.eval_dataset", "data.dataset"],
      bad=[["data.val_size=0.1", "data.eval_dataset=demo_sft_eval"], ["data.dataset=null", "data.val_size=0.1"]],
      good=[["data.val_size=0.1"], ["data.eval_dataset=demo_sft_eval"]])
def val_size(cfg, env):
    """A validation split is cut from data.dataset; it cannot be combined with data.eval_dataset."""
    vs = get(cfg, "data.val_size", 0.0)
    if vs <= 1e-6:
        return
    if get(cfg, "data.eval_dataset"):
        yield problem("data-val-size", "data.val_size + data.eval_dataset", vs,
                      "a validation split and a separate evaluation dataset were both given; only one is used",
                      "either data.val_size > 0 or data.eval_dataset", "data.val_size=0 (keep data.eval_dataset)")
    if not get(cfg, "data.dataset"):
        yield problem("data-val-size", "data.val_size", vs, "there is no data.dataset to cut the validation split from",
                      "data.val_size=0 without data.dataset", "data.dataset=<name> or data.val_size=0")


@rule("data-interleave", keys=["data.interleave_probs", "data.mix_strategy", "data.dataset"],
      bad=[["data.interleave_probs=1.0"], ["data.mix_strategy=interleave_under", "data.interleave_probs='0.5,0.5'"],
           ["data.dataset='demo_sft,demo_sft_zh'", "data.mix_strategy=interleave_over", "data.interleave_probs='0.3,0.3'"]],
      good=[["data.dataset='demo_sft,demo_sft_zh'", "data.mix_strategy=interleave_over",
             "data.interleave_probs='0.3,0.7'"], ["data.mix_strategy=interleave_under"]])
def interleave(cfg, env):
    """Sampling probabilities need an interleave strategy, one number per training dataset, summing to 1."""
    probs = get(cfg, "data.interleave_probs", [])
    if not probs:
        return
    mix = get(cfg, "data.mix_strategy", "concat")
    if mix == "concat":
        yield problem("data-interleave", "data.interleave_probs", get(cfg, "data.interleave_probs"),
                      "sampling probabilities only apply when datasets are interleaved; data.mix_strategy=concat",
                      "interleave_under, interleave_over or interleave_once", "data.mix_strategy=interleave_under")
    try:
        nums = [float(p) for p in probs]
    except ValueError:
        yield problem("data-interleave", "data.interleave_probs", get(cfg, "data.interleave_probs"),
                      "is not a comma-separated list of numbers", "e.g. '0.7,0.3'", "data.interleave_probs='0.5,0.5'")
        return
    names = get(cfg, "data.dataset", [])  # evaluation datasets are concatenated, never interleaved
    if names and len(names) != len(nums):
        yield problem("data-interleave", "data.interleave_probs + data.dataset", get(cfg, "data.interleave_probs"),
                      f"{len(nums)} probabilities for {len(names)} datasets in data.dataset",
                      "exactly one probability per training dataset", f"give {len(names)} comma-separated probabilities")
    if abs(sum(nums) - 1.0) > 1e-6 or any(n < 0 for n in nums):
        yield problem("data-interleave", "data.interleave_probs", get(cfg, "data.interleave_probs"),
                      f"probabilities must be >= 0 and sum to 1 (they sum to {sum(nums):g})",
                      "non-negative numbers summing to 1", "rescale them, e.g. '0.5,0.5'")


@rule("data-streaming", keys=["data.streaming", "train.max_steps", "data.max_samples", "data.val_size",
                              "data.tokenized_path", "train.stage"],
      bad=[["data.streaming=true"], ["data.streaming=true", "train.max_steps=10", "data.max_samples=5"],
           ["data.streaming=true", "train.max_steps=10", "data.val_size=0.1"],
           ["data.streaming=true", "train.max_steps=10", "data.tokenized_path=/tmp/tok"],
           ["data.streaming=true", "train.max_steps=10", "train.stage=dpo", "data.dataset=demo_pref"]],
      good=[["data.streaming=true", "train.max_steps=10"], ["data.max_samples=5"],
            ["data.streaming=true", "train.max_steps=10", "data.val_size=10"]])
def streaming(cfg, env):
    """A streamed dataset has no length: it needs max_steps, an integer val_size, and no max_samples; it is
    never saved whole (no tokenized_path); it feeds the pt and sft stages."""
    if not get(cfg, "data.streaming"):
        return
    if stage(cfg) not in ("pt", "sft"):
        yield problem("data-streaming", "data.streaming + train.stage", stage(cfg),
                      "streaming feeds the pt and sft trainers; the preference and RL stages read tokenized data",
                      "train.stage=pt or sft with data.streaming=true", "data.streaming=false")
    if get(cfg, "train.max_steps", -1) <= 0:
        yield problem("data-streaming", "data.streaming + train.max_steps", get(cfg, "train.max_steps", -1),
                      "a streamed dataset has no length, so the number of training steps must be given",
                      "train.max_steps > 0 with data.streaming=true", "train.max_steps=1000")
    if get(cfg, "data.max_samples") is not None:
        yield problem("data-streaming", "data.max_samples", get(cfg, "data.max_samples"),
                      "cannot truncate a streamed dataset", "data.max_samples=null with data.streaming=true",
                      "data.max_samples=null (bound the run with train.max_steps)")
    vs = get(cfg, "data.val_size", 0.0)
    if 0 < vs < 1 or vs != int(vs):
        yield problem("data-streaming", "data.val_size", vs, "a ratio cannot be taken of a streamed dataset",
                      "a whole number of examples (>= 1) when streaming", "data.val_size=100")
    if get(cfg, "data.tokenized_path"):
        yield problem("data-streaming", "data.tokenized_path", get(cfg, "data.tokenized_path"),
                      "a streamed dataset cannot be saved to disk", "data.tokenized_path=null when streaming",
                      "data.tokenized_path=null or data.streaming=false")


@rule("data-mask-history", keys=["data.mask_history", "data.train_on_prompt"],
      bad=[["data.mask_history=true", "data.train_on_prompt=true"]],
      good=[["data.mask_history=true"], ["data.train_on_prompt=true"]])
def mask_history(cfg, env):
    """Training on the prompt and masking earlier turns contradict each other."""
    if get(cfg, "data.mask_history") and get(cfg, "data.train_on_prompt"):
        yield problem("data-mask-history", "data.mask_history + data.train_on_prompt", True,
                      "mask_history drops the loss on everything but the last answer; train_on_prompt adds the"
                      " prompts to the loss", "at most one of them", "data.train_on_prompt=false")


@rule("data-sft-only", keys=["data.neat_packing", "data.train_on_prompt", "data.mask_history",
                             "train.predict_with_generate"],
      bad=[["train.stage=pt", "data.dataset=demo_pt", "data.neat_packing=true"],
           ["train.stage=pt", "data.dataset=demo_pt", "data.train_on_prompt=true"],
           ["train.stage=dpo", "data.dataset=demo_pref", "data.mask_history=true"],
           ["train.stage=dpo", "data.dataset=demo_pref", "train.predict_with_generate=true"]],
      good=[["data.neat_packing=true"], ["data.train_on_prompt=true"], ["train.stage=dpo", "data.dataset=demo_pref"]])
def sft_only(cfg, env):
    """Prompt masking, neat packing and generation during evaluation exist for the sft stage only."""
    st = stage(cfg)
    if st == "sft":
        return
    for key in ("data.neat_packing", "data.train_on_prompt", "data.mask_history", "train.predict_with_generate"):
        if get(cfg, key):
            yield problem("data-sft-only", key, True, f"only applies to train.stage=sft (this run is {st})",
                          "false for stages other than sft", f"{key}=false")


@rule("data-predict", keys=["train.do_predict", "train.predict_with_generate", "train.compute_accuracy"],
      bad=[["train.do_predict=true", "data.val_size=0.1"],
           ["train.predict_with_generate=true", "train.compute_accuracy=true"]],
      good=[["train.do_predict=true", "data.val_size=0.1", "train.predict_with_generate=true"],
            ["train.compute_accuracy=true"]])
def predict(cfg, env):
    """SFT predictions are generated text (predict_with_generate), which rules out token accuracy. Prediction
    (train.do_predict) always generates, so do_predict with predict_with_generate=false is refused with the reason;
    predict_with_generate=true without do_predict stays accepted (a recipe arms it, the command line turns
    prediction on), as in LLaMA-Factory."""
    pwg = get(cfg, "train.predict_with_generate")
    if stage(cfg) == "sft" and get(cfg, "train.do_predict") and not pwg:
        yield problem("data-predict", "train.predict_with_generate", False,
                      "the predict step (train.do_predict=true) always generates its predictions in llmpipe; "
                      "train.predict_with_generate=false would ask for predictions without generation, which "
                      "nothing computes", "train.predict_with_generate=true with train.do_predict=true",
                      "train.predict_with_generate=true")
    if pwg and get(cfg, "train.compute_accuracy"):
        yield problem("data-predict", "train.predict_with_generate + train.compute_accuracy", True,
                      "token accuracy needs the logits of a forward pass, generation returns text",
                      "one of the two", "train.compute_accuracy=false")


@rule("data-train-dataset", keys=["train.do_train", "data.dataset"],
      bad=[["train.do_train=true", "data.dataset=null"]],
      good=[["train.do_train=true"], ["train.do_train=false", "data.dataset=null"]])
def train_dataset(cfg, env):
    """Training needs a training dataset."""
    if get(cfg, "train.do_train") and not get(cfg, "data.dataset"):
        yield problem("data-train-dataset", "data.dataset", None, "training was requested without a dataset",
                      "one or more names from dataset_info.json", "data.dataset=demo_sft")


@rule("data-eval-split", keys=["train.do_eval", "train.do_predict", "train.eval_strategy", "data.eval_dataset",
                               "data.val_size"],
      bad=[["train.do_eval=true"], ["train.eval_strategy=steps"],
           ["train.do_predict=true", "train.predict_with_generate=true"]],
      good=[["train.do_eval=true", "data.val_size=0.1"], ["train.eval_strategy=steps", "data.eval_dataset=demo_sft_eval"],
            ["train.do_predict=true", "train.predict_with_generate=true", "data.eval_dataset=demo_sft_eval"]])
def eval_split(cfg, env):
    """Evaluation and prediction need data: data.eval_dataset or a validation split (data.val_size)."""
    wants = [k for k in ("train.do_eval", "train.do_predict") if get(cfg, k)]
    if evaluates(cfg) and not get(cfg, "train.do_eval"):
        wants.append("train.eval_strategy")
    if not wants or get(cfg, "data.eval_dataset") or get(cfg, "data.val_size", 0.0) > 1e-6:
        return
    if stage(cfg) == "ppo":
        return  # reported by ppo-no-eval
    key = wants[0]
    yield problem("data-eval-split", key, get(cfg, key), "evaluation/prediction was requested but there is no data for it",
                  "data.eval_dataset=<name> or data.val_size > 0",
                  "data.eval_dataset=<name> or data.val_size=0.1")


@rule("data-packing", keys=["data.neat_packing", "data.packing", "train.stage"],
      bad=[["data.neat_packing=true", "data.packing=false"],
           ["train.stage=dpo", "data.dataset=demo_pref", "data.packing=true"]],
      good=[["data.neat_packing=true"], ["data.neat_packing=true", "data.packing=true"],
            ["train.stage=pt", "data.dataset=demo_pt", "data.packing=false"], ["data.packing=true"]])
def packing(cfg, env):
    """neat_packing is a kind of packing (it cannot be combined with packing turned off); packing exists for
    the pt and sft stages (null = on for pt only)."""
    if get(cfg, "data.neat_packing") and get(cfg, "data.packing") is False:
        yield problem("data-packing", "data.neat_packing + data.packing", False,
                      "neat packing packs sequences, but data.packing=false turns packing off",
                      "data.packing=true or null with neat_packing", "data.packing=null")
    if get(cfg, "data.packing") is True and stage(cfg) not in ("pt", "sft"):
        yield problem("data-packing", "data.packing + train.stage", True,
                      f"packing applies to the pt and sft stages; train.stage={stage(cfg)} pairs or scores "
                      "whole examples", "data.packing=null or false for this stage", "data.packing=null")
