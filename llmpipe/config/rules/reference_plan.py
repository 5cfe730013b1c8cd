"""When the reference log-probabilities of a dpo/kto run get their own ``reference`` stage, and why (the plan
shows the reason on the train node; ``llmpipe-tools plan``).

The reference stage scores every train and eval row once with the reference model and publishes the
log-probs; its fingerprint covers only what they depend on, so a sweep over ``pref.beta``, ``pref.loss``,
``lora.*`` or the learning rate, and a re-run with new values, reuse it. Inline (TRL's default), the reference
model runs again in every training step and every evaluation.

Cost model (one reference forward per row read, either way): the stage costs one forward per train row the
run reads (every row for a run of whole epochs; for a run that ``max_steps`` may stop sooner, only the rows those
steps read: ``visit_steps``) plus ``rows(eval)``, once, plus a model load; inline costs ``max_steps x global
batch`` forwards per run plus ``rows(eval)`` per evaluation. ``pref.precompute_reference``:

- ``null`` (auto): the stage in a sweep (a Hydra multirun: its jobs share one computation, and every later
  job finds it cached) and when the run sees the whole training set at least once (``max_steps`` unset and
  ``num_train_epochs >= 1``, or ``max_steps x global batch >= data.max_samples``); inline for a shorter
  one-off run (the stage would do the same forwards plus a model load, and only a later re-run would gain) or
  when the data size is unknown against ``max_steps``;
- ``true``: always the stage (a sweep of short runs shares one computation); refused pre-flight where it
  cannot work (below);
- ``false``: always inline.

Where the stage cannot reproduce the inline reference, auto falls back inline (reason in the plan) and
``true`` is refused: streamed data (rows are not indexable), a LoRA reference that depends on the adapt stage
(PiSSA's residual base, a resumed adapter whose initial copy is the reference), model patches applied only
while building the policy (S²-Attn, mixture-of-depths, Unsloth, a k-bit quantized LoRA base), and FSDP.
orpo and simpo are reference-free (TRL's ORPO/CPO trainers): no stage. Image rows are scored by the stage with
their images, through the train stage's own trainer and collator (llmpipe.training.mm_preference).
"""
from __future__ import annotations

from typing import Any

from llmpipe.config.families.pref import REFERENCE_FREE
from llmpipe.config.rules._common import get as _get

STAGES_WITH_REFERENCE = ("dpo", "kto")


def has_reference(cfg: Any) -> bool:
    """Whether this train step uses a reference model at all."""
    stage = _get(cfg, "train.stage")
    if stage not in STAGES_WITH_REFERENCE:
        return False
    return not (stage == "dpo" and _get(cfg, "pref.loss") in REFERENCE_FREE)


def blocked_by(cfg: Any) -> str | None:
    """Why a reference stage could not reproduce the inline reference of this configuration (None: it can)."""
    if _get(cfg, "data.streaming"):
        return "data.streaming: streamed rows cannot carry precomputed columns"
    if _get(cfg, "launch.kind") == "fsdp" or _get(cfg, "launch.fsdp"):
        return "FSDP shards the policy only inside training"
    for key, why in (("model.shift_attn", "S²-Attn"), ("model.mixture_of_depths", "mixture-of-depths"),
                     ("model.use_unsloth", "Unsloth")):
        if _get(cfg, key):
            return f"{key}: {why} patches the model only while the policy is built"
    if _get(cfg, "train.finetuning_type") == "lora" and not _get(cfg, "pref.ref_model"):
        if _get(cfg, "lora.pissa_init"):
            return "lora.pissa_init: the reference is PiSSA's residual base, made by the adapt stage"
        adapters = _get(cfg, "model.adapter_name_or_path") or []
        if isinstance(adapters, str):
            adapters = [a for a in adapters.split(",") if a.strip()]
        if adapters and not _get(cfg, "lora.create_new_adapter"):
            return "model.adapter_name_or_path: the reference is the initial copy of the resumed adapter"
        if _get(cfg, "quantization.bit"):
            return "quantization.bit: the k-bit base is prepared for training with the policy"
    return None


def _global_batch(cfg: Any) -> int:
    world = int(_get(cfg, "launch.nproc_per_node", 1) or 1) * int(_get(cfg, "launch.nnodes", 1) or 1)
    if _get(cfg, "launch.kind", "local") == "local":   # one process
        world = 1
    return int(_get(cfg, "train.per_device_train_batch_size", 1)) * int(
        _get(cfg, "train.gradient_accumulation_steps", 1)) * world


def in_sweep() -> bool:
    """Whether this configuration is a job of a Hydra multirun (-m, or a sweeper such as Optuna)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except (ImportError, ValueError, AttributeError):
        return False


def decide(cfg: Any) -> tuple[bool, str]:
    """(reference stage?, reason) for a train step that has a reference (see the module docstring)."""
    wanted = _get(cfg, "pref.precompute_reference")
    if wanted is False:
        return False, "pref.precompute_reference=false"
    blocked = blocked_by(cfg)
    if blocked:
        return False, blocked
    if wanted:
        return True, "pref.precompute_reference=true"
    if in_sweep():
        return True, "a sweep: its jobs share one computation"
    steps = int(_get(cfg, "train.max_steps", -1))
    if steps <= 0:
        epochs = float(_get(cfg, "train.num_train_epochs", 1.0))
        if epochs >= 1:
            return True, f"{epochs:g} epoch(s): every row is scored at least once, and again in every epoch"
        return False, f"train.num_train_epochs={epochs:g} < 1: most rows are never visited"
    rows = steps * _global_batch(cfg)
    limit = _get(cfg, "data.max_samples")
    if limit is None:
        return False, (f"max_steps={steps} ({rows} rows) against data of unknown size; "
                       "pref.precompute_reference=true shares one computation across a sweep")
    if rows >= int(limit):
        return True, f"{rows} rows visited >= data.max_samples={limit}: at least one epoch"
    return False, f"{rows} rows visited < data.max_samples={limit}: shorter than one epoch"


# what decides which rows the first train.max_steps steps read (the trainer's sampler, its seed and batches, the
# ranks it is sharded over): the reference stage's fingerprint covers them when it scores only those rows
VISIT_KEYS = ("train.max_steps", "train.seed", "train.data_seed", "train.disable_shuffling",
              "train.per_device_train_batch_size", "train.gradient_accumulation_steps", "launch.kind",
              "launch.nproc_per_node", "launch.nnodes", "launch.ray_num_workers")


def visit_steps(cfg: Any) -> int | None:
    """``train.max_steps`` when the reference stage scores only the train rows those steps read, None when it
    scores every row (no step limit, or one that covers ``data.max_samples`` rows or more)."""
    steps = int(_get(cfg, "train.max_steps", -1))
    if steps <= 0:
        return None
    limit = _get(cfg, "data.max_samples")
    if limit is not None and steps * _global_batch(cfg) >= int(limit):
        return None
    return steps


def refusal(cfg: Any) -> str | None:
    """Why ``pref.precompute_reference`` (set to true or false) cannot take effect here (None: it can)."""
    wanted = _get(cfg, "pref.precompute_reference")
    if wanted is None:
        return None
    if not has_reference(cfg):
        stage = _get(cfg, "train.stage")
        if stage == "dpo":
            return f"pref.loss={_get(cfg, 'pref.loss')} trains without a reference model (TRL's ORPO/CPO trainers)"
        return f"train.stage={stage} has no reference log-probs (only dpo and kto)"
    if wanted:
        blocked = blocked_by(cfg)
        if blocked:
            return f"reference log-probs cannot be precomputed here: {blocked}"
    return None
