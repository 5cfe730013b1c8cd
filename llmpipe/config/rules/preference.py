"""Preference-training rules: which pref.* settings apply to which stage and loss, and the reference model."""
from __future__ import annotations

from llmpipe.config.families.pref import REFERENCE_FREE
from llmpipe.config.flags import flag_table
from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import fmt, get, given, problem, stage

REF_FREE = REFERENCE_FREE               # trained by TRL's ORPO/CPO trainers: no reference model
SMOOTHING = ("sigmoid", "robust", "exo_pair")
# setting -> (stages that read it, losses that read it or None for all)
SCOPE = {
    "pref.loss": (("dpo",), None),
    "pref.dpo_label_smoothing": (("dpo",), SMOOTHING),
    "pref.simpo_gamma": (("dpo",), ("simpo",)),
    "pref.bco_weight": (("dpo",), None),
    "pref.ld_alpha": (("dpo",), None),
    "pref.ftx": (("dpo",), None),
    "pref.beta": (("dpo", "kto"), None),
    "pref.kto_chosen_weight": (("kto",), None),
    "pref.kto_rejected_weight": (("kto",), None),
}
REF_KEYS = ("pref.ref_model", "pref.ref_model_adapters", "pref.ref_model_quantization_bit")


@rule("pref-stage-settings", keys=list(SCOPE),
      bad=[["pref.loss=ipo"], ["train.stage=kto", "data.dataset=demo_kto", "pref.loss=kto_pair"],
           ["pref.ftx=0.5", "train.stage=kto", "data.dataset=demo_kto"],
           ["pref.kto_chosen_weight=2.0", "train.stage=dpo", "data.dataset=demo_pref"],
           ["pref.beta=0.5"], ["train.stage=dpo", "data.dataset=demo_pref", "pref.simpo_gamma=1.0"],
           ["train.stage=dpo", "data.dataset=demo_pref", "pref.ld_alpha=0.5", "pref.loss=orpo"]],
      good=[["pref.loss=ipo", "train.stage=dpo", "data.dataset=demo_pref"],
            ["pref.kto_chosen_weight=2.0", "train.stage=kto", "data.dataset=demo_kto"],
            ["train.stage=dpo", "data.dataset=demo_pref", "pref.simpo_gamma=1.0", "pref.loss=simpo"],
            ["pref=simpo", "data.dataset=demo_pref"], ["pref.ftx=0.5", "train.stage=dpo", "data.dataset=demo_pref"]])
def stage_settings(cfg, env):
    """A preference setting changed from its default must be one the stage (and loss) actually reads."""
    st, loss = stage(cfg), get(cfg, "pref.loss", "sigmoid")
    for key, (stages, losses) in SCOPE.items():
        value, default = get(cfg, key), flag_table().default(key)
        if value is None or value == default:   # unchanged
            continue
        if st not in stages:
            yield problem("pref-stage-settings", key, value,
                          f"is read only by train.stage={'/'.join(stages)}; this run is train.stage={st}, so it would be ignored",
                          f"the default ({default}) for train.stage={st}",
                          f"train.stage={stages[0]}, or {key}={default}")
        elif losses is not None and loss not in losses and key != "pref.dpo_label_smoothing":
            yield problem("pref-stage-settings", key, value,
                          f"is read only by pref.loss={'/'.join(losses)}; pref.loss={loss} ignores it",
                          f"the default ({default}) with pref.loss={loss}",
                          f"pref.loss={losses[0]}, or {key}={default}")
        elif key in ("pref.ld_alpha", "pref.bco_weight") and loss in REF_FREE + ("kto_pair",):
            what = "(ORPO/CPO trainer) has" if loss in REF_FREE else "(the paired KTO loss) has"
            yield problem("pref-stage-settings", key, value, f"pref.loss={loss} {what} no {key.split('.')[1]}",
                          f"a DPO loss ({fmt(('sigmoid', 'ipo', 'hinge'))}, ...) with {key}",
                          f"{key}={default}, or pref.loss=sigmoid")
        elif key == "pref.ftx" and loss == "orpo":
            yield problem("pref-stage-settings", key, value, "the ORPO loss already contains the SFT (NLL) term, "
                          "with weight 1; pref.beta weighs the odds-ratio term against it",
                          "pref.ftx=0 with pref.loss=orpo", "pref.ftx=0 (tune pref.beta instead)")


@rule("pref-label-smoothing", keys=["pref.dpo_label_smoothing", "pref.loss"],
      bad=[["train.stage=dpo", "data.dataset=demo_pref", "pref.loss=ipo", "pref.dpo_label_smoothing=0.1"],
           ["train.stage=dpo", "data.dataset=demo_pref", "pref.loss=robust", "pref.dpo_label_smoothing=0.5"],
           ["train.stage=dpo", "data.dataset=demo_pref", "pref.loss=exo_pair"]],
      good=[["train.stage=dpo", "data.dataset=demo_pref", "pref.dpo_label_smoothing=0.1"],
            ["train.stage=dpo", "data.dataset=demo_pref", "pref.loss=robust", "pref.dpo_label_smoothing=0.2"],
            ["train.stage=dpo", "data.dataset=demo_pref", "pref.loss=exo_pair", "pref.dpo_label_smoothing=0.1"]])
def label_smoothing(cfg, env):
    """Label smoothing (cDPO) exists for the sigmoid, robust and exo_pair losses, each with its own range."""
    if stage(cfg) != "dpo":
        return
    ls, loss = get(cfg, "pref.dpo_label_smoothing", 0.0), get(cfg, "pref.loss", "sigmoid")
    if ls > 1e-6 and loss not in SMOOTHING:
        yield problem("pref-label-smoothing", "pref.dpo_label_smoothing", ls, f"pref.loss={loss} has no label smoothing",
                      f"label smoothing with pref.loss={'/'.join(SMOOTHING)}", "pref.dpo_label_smoothing=0, or pref.loss=sigmoid")
    elif loss == "robust" and ls >= 0.5:
        yield problem("pref-label-smoothing", "pref.dpo_label_smoothing", ls, "the robust loss divides by 1 - 2 * label_smoothing",
                      "0 <= pref.dpo_label_smoothing < 0.5 for robust", "pref.dpo_label_smoothing=0.1")
    elif loss == "exo_pair" and ls <= 1e-6:
        yield problem("pref-label-smoothing", "pref.dpo_label_smoothing", ls, "the exo_pair loss needs a label smoothing above 0",
                      "0 < pref.dpo_label_smoothing <= 0.5 for exo_pair", "pref.dpo_label_smoothing=0.001")


@rule("pref-ref-free-loss", keys=["pref.loss", *REF_KEYS],
      bad=[["pref=simpo", "data.dataset=demo_pref", "pref.ref_model=builtin:tiny"],
           ["pref=orpo", "data.dataset=demo_pref", "pref.ref_model_quantization_bit=4"]],
      good=[["pref=simpo", "data.dataset=demo_pref"], ["pref=ipo", "data.dataset=demo_pref", "pref.ref_model=builtin:tiny"]])
def ref_free_loss(cfg, env):
    """ORPO and SimPO need no reference model: a reference model given with them would be silently unused."""
    loss = get(cfg, "pref.loss", "sigmoid")
    if stage(cfg) != "dpo" or loss not in REF_FREE:
        return
    for key in REF_KEYS:
        if given(get(cfg, key)):
            yield problem("pref-ref-free-loss", key, get(cfg, key), f"pref.loss={loss} trains without a reference model",
                          f"{key}=null with orpo/simpo; a reference model with sigmoid, ipo, hinge, ...",
                          f"{key}=null, or pref.loss=sigmoid")


@rule("pref-ref-model-stage", keys=list(REF_KEYS) + ["train.stage"],
      bad=[["pref.ref_model=builtin:tiny"], ["train.stage=rm", "data.dataset=demo_pref", "pref.ref_model_adapters=llmpipe-test/a"]],
      good=[["pref.ref_model=builtin:tiny", "train.stage=dpo", "data.dataset=demo_pref"],
            ["pref.ref_model=builtin:tiny", "train.stage=kto", "data.dataset=demo_kto"]])
def ref_model_stage(cfg, env):
    """Only dpo, kto and ppo use a reference model."""
    st = stage(cfg)
    if st in ("dpo", "kto", "ppo"):
        return
    for key in REF_KEYS:
        if given(get(cfg, key)):
            yield problem("pref-ref-model-stage", key, get(cfg, key),
                          f"train.stage={st} has no reference model, so it would be ignored",
                          "a reference model with train.stage=dpo, kto or ppo", f"{key}=null")


@rule("pref-ref-model-parts", keys=["pref.ref_model", "pref.ref_model_adapters", "pref.ref_model_quantization_bit"],
      bad=[["train.stage=dpo", "data.dataset=demo_pref", "pref.ref_model_adapters=llmpipe-test/a"],
           ["train.stage=dpo", "data.dataset=demo_pref", "pref.ref_model_quantization_bit=4"],
           ["train.stage=dpo", "data.dataset=demo_pref", "pref.ref_model=builtin:tiny", "pref.ref_model_quantization_bit=4",
            "pref.ref_model_adapters='llmpipe-test/a,llmpipe-test/b'"]],
      good=[["train.stage=dpo", "data.dataset=demo_pref", "pref.ref_model=builtin:tiny", "pref.ref_model_adapters=llmpipe-test/a"],
            ["train.stage=dpo", "data.dataset=demo_pref", "pref.ref_model=builtin:tiny", "pref.ref_model_quantization_bit=4",
             "pref.ref_model_adapters=llmpipe-test/a"]])
def ref_model_parts(cfg, env):
    """ref_model_adapters and ref_model_quantization_bit describe pref.ref_model; a quantized one takes one adapter."""
    if get(cfg, "pref.ref_model") is None:
        for key in ("pref.ref_model_adapters", "pref.ref_model_quantization_bit"):
            if given(get(cfg, key)):
                yield problem("pref-ref-model-parts", key, get(cfg, key), "applies to pref.ref_model, which is unset (the "
                              "reference is then the policy's own base model, used as is)", f"{key} together with pref.ref_model",
                              f"pref.ref_model=<model>, or {key}=null")
        return
    ads = get(cfg, "pref.ref_model_adapters", [])
    if get(cfg, "pref.ref_model_quantization_bit") is not None and len(ads) > 1:
        yield problem("pref-ref-model-parts", "pref.ref_model_adapters", get(cfg, "pref.ref_model_adapters"),
                      f"{len(ads)} adapters cannot be merged into a quantized reference model", "one adapter with "
                      "pref.ref_model_quantization_bit", "merge the adapters first, or pref.ref_model_quantization_bit=null")


@rule("pref-kto-batch", keys=["train.stage", "train.per_device_train_batch_size"],
      bad=[["train.stage=kto", "data.dataset=demo_kto", "train.per_device_train_batch_size=1"]],
      good=[["train.stage=kto", "data.dataset=demo_kto", "train.per_device_train_batch_size=2"],
            ["train.per_device_train_batch_size=1"]])
def kto_batch(cfg, env):
    """KTO estimates its KL reference point from mismatched pairs within a batch: it needs 2+ examples per batch."""
    if stage(cfg) == "kto" and get(cfg, "train.per_device_train_batch_size", 8) < 2:
        gas = get(cfg, "train.gradient_accumulation_steps", 1)
        same = (f"train.per_device_train_batch_size=2 train.gradient_accumulation_steps={gas // 2}: the same {gas}"
                " examples per optimizer step" if isinstance(gas, int) and gas % 2 == 0 else
                "train.per_device_train_batch_size=2 (with an even train.gradient_accumulation_steps, halve it to"
                " keep the examples per optimizer step)")
        yield problem("pref-kto-batch", "train.per_device_train_batch_size", 1, "KTO's KL estimate needs at least two "
                      "examples per device batch (with one, it equals the implied reward; TRL pairs each example with"
                      " another answer of its own device batch, where LLaMA-Factory, which trains with 1, pairs them"
                      " while preprocessing)", ">= 2 for train.stage=kto", same)


@rule("pref-precompute-reference", keys=["pref.precompute_reference", "pref.loss", "train.stage", "data.streaming"],
      bad=[["pref=orpo", "data.dataset=demo_pref", "pref.precompute_reference=true"],
           ["train.stage=dpo", "data.dataset=demo_pref", "pref.precompute_reference=true", "lora.pissa_init=true"],
           ["train.stage=sft", "pref.precompute_reference=false"]],
      good=[["train.stage=dpo", "data.dataset=demo_pref", "pref.precompute_reference=true"],
            ["train.stage=kto", "data.dataset=demo_kto", "pref.precompute_reference=false"],
            ["train.stage=dpo", "data.dataset=demo_pref", "lora.pissa_init=true"]])
def precompute_reference(cfg, env):
    """pref.precompute_reference applies to the reference of dpo/kto; true needs a reference the stage can reproduce."""
    from llmpipe.config.rules.reference_plan import refusal

    why = refusal(cfg)
    if why:
        yield problem("pref-precompute-reference", "pref.precompute_reference", get(cfg, "pref.precompute_reference"),
                      why, "null (auto), true or false with train.stage=dpo/kto and a reference model",
                      "pref.precompute_reference=null")
