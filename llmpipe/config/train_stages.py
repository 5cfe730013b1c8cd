"""The one registry of train stages (``train.stage``): what each one is, which data it reads, which families
it uses, and which trainer runs it.

Everything that used to restate the list derives from here: the choices of ``train.stage`` (config), the
data kind the load stage builds (llmpipe.data.options), the dataset format pre-flight asks for, the families
a chained step does not inherit (rules/ppo), and the stage graph (pipeline/dag). The facts are plain data, so
config and pre-flight stay free of torch; the trainer of each stage is attached by the training backend
(``@implements("dpo")`` in llmpipe.training), and a unit test checks that every stage has one.

Adding a train stage: one entry below, one ``@implements`` trainer in llmpipe/training/ (see docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class TrainStage:
    name: str
    doc: str
    data_kind: str                     # rows the load stage builds: pt | sft | pairwise | kto | prompt
    dataset_format: str                # datasets it accepts (dataset_info.json): plain | pairwise | kto
    families: tuple[str, ...] = ()     # stage-specific families it reads (pref, ppo); others are reset in chains
    reads: tuple[str, ...] = ()        # config read by its train node beyond the train stage kind's own reads
    evaluates: bool = False            # train.do_eval adds the held-out loss/perplexity stage (token-level LM data)
    reward_model: bool = False         # trains a reward model that later steps use by reference (step:<name>)


TRAIN_STAGES: dict[str, TrainStage] = {s.name: s for s in (
    TrainStage("pt", "pre-training on plain text", data_kind="pt", dataset_format="plain", evaluates=True),
    TrainStage("sft", "supervised fine-tuning", data_kind="sft", dataset_format="plain", evaluates=True),
    TrainStage("rm", "reward model", data_kind="pairwise", dataset_format="pairwise", reward_model=True),
    TrainStage("ppo", "PPO against a reward model", data_kind="prompt", dataset_format="plain",
               families=("pref", "ppo"), reads=("generate",)),   # PPO samples its own data with generate.*
    TrainStage("dpo", "pairwise preference losses (pref.loss)", data_kind="pairwise", dataset_format="pairwise",
               families=("pref",)),
    TrainStage("kto", "KTO on desirable/undesirable answers", data_kind="kto", dataset_format="kto",
               families=("pref",)),
)}

# Families only some train stages read.
STAGE_FAMILIES = ("pref", "ppo")

_TRAINERS: dict[str, Callable[[Any], dict]] = {}


def stage_names() -> tuple[str, ...]:
    return tuple(TRAIN_STAGES)


def train_stage(name: str) -> TrainStage:
    return TRAIN_STAGES[name]


def implements(name: str) -> Callable[[Callable[[Any], dict]], Callable[[Any], dict]]:
    """Attach the trainer of train stage ``name`` (used by the training backend on its entry functions)."""
    if name not in TRAIN_STAGES:
        raise KeyError(f"train stage {name!r} is not in llmpipe.config.train_stages.TRAIN_STAGES")

    def deco(fn: Callable[[Any], dict]) -> Callable[[Any], dict]:
        _TRAINERS[name] = fn
        return fn

    return deco


def trainer(name: str) -> Callable[[Any], dict] | None:
    """The trainer attached for ``name`` (None until llmpipe.training.trainers is imported, or when missing)."""
    return _TRAINERS.get(name)


def unused_families(name: str) -> tuple[str, ...]:
    """The stage-specific families train stage ``name`` never reads (a chained step resets them)."""
    used = TRAIN_STAGES[name].families if name in TRAIN_STAGES else STAGE_FAMILIES
    return tuple(f for f in STAGE_FAMILIES if f not in used)
