"""The stage graph of one run, built from the configuration. It is data: nodes with their kind, their
effective config and their inputs, printable and inspectable (``run.dry_run=true``, ``llmpipe-tools plan``).

Shape: ``load -> adapt -> train -> merge -> export`` with only the stages the config needs (adapt and merge
only for LoRA; merge/export only when exporting), and one ``load[/adapt]/train[/merge]`` chain per entry
of ``pipeline.before`` in front of the main train stage (e.g. sft then dpo): each chained stage starts from
the previous one's model.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from llmpipe.config.problems import Problem
from llmpipe.stages.base import StageKind
from llmpipe.stages.kinds import ADAPT, EXPORT, LOAD, MERGE, TRAIN


@dataclass
class Node:
    id: str
    kind: StageKind
    cfg: DictConfig
    inputs: dict[str, str]               # role -> upstream node id
    label: str = ""
    fingerprint: str = ""
    reads: dict[str, Any] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)

    @property
    def upstream(self) -> list[str]:
        return list(dict.fromkeys(self.inputs.values()))


@dataclass
class Plan:
    nodes: list[Node]

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    def to_dict(self) -> dict[str, Any]:
        return {n.id: {"kind": n.kind.name, "after": n.upstream, "inputs": n.inputs, "label": n.label,
                       "fingerprint": n.fingerprint or None} for n in self.nodes}


def _with_overrides(cfg: DictConfig, overrides: dict[str, Any]) -> DictConfig:
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.pipeline.before = {}
        for key, value in overrides.items():
            OmegaConf.update(out, str(key), value, merge=True)
    return out


def chain_configs(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(suffix, effective config) for every train step in order; the main step has suffix ''."""
    steps: list[tuple[str, DictConfig]] = []
    before = OmegaConf.to_container(cfg.pipeline.before, resolve=True) or {}
    for name, overrides in before.items():
        steps.append((f".{name}", _with_overrides(cfg, dict(overrides or {}))))
    steps.append(("", cfg))
    return steps


def build_plan(cfg: DictConfig) -> Plan:
    """Nodes in execution order. Raises ConfigError-worthy problems via :func:`plan_problems` first."""
    nodes: list[Node] = []
    steps = chain_configs(cfg)
    previous_model: str | None = None
    for i, (suffix, scfg) in enumerate(steps):
        last = i == len(steps) - 1
        stage, ft = scfg.train.stage, scfg.train.finetuning_type
        base_inputs = {"base": previous_model} if previous_model else {}
        trains = bool(scfg.train.do_train)
        load = Node(f"load{suffix}", LOAD, scfg, dict(base_inputs), label=f"{stage} data, model")
        nodes.append(load)
        if not trains:
            continue
        train_inputs = {"load": load.id}
        if ft == "lora":
            adapt = Node(f"adapt{suffix}", ADAPT, scfg, {"load": load.id}, label=f"lora r={scfg.lora.rank}")
            nodes.append(adapt)
            train_inputs["adapt"] = adapt.id
        train = Node(f"train{suffix}", TRAIN, scfg, train_inputs, label=f"{stage} · {ft}")
        nodes.append(train)
        model_node = train.id
        exporting = last and scfg.export.dir
        if ft == "lora" and (not last or exporting):
            merge = Node(f"merge{suffix}", MERGE, scfg, {"load": load.id, "train": train.id}, label="merge lora")
            nodes.append(merge)
            model_node = merge.id
        previous_model = model_node
    if cfg.export.dir and previous_model:
        nodes.append(Node("export", EXPORT, cfg, {"model": previous_model, "load": _last_load(nodes)},
                          label=str(cfg.export.dir)))
    return Plan(nodes)


def _last_load(nodes: list[Node]) -> str:
    return [n.id for n in nodes if n.kind is LOAD][-1]


def plan_problems(cfg: DictConfig) -> list[Problem]:
    """Problems only visible once the graph is known (nothing to do; chained steps that are invalid)."""
    from llmpipe.config.validate import validate

    problems: list[Problem] = []
    steps = chain_configs(cfg)
    for suffix, scfg in steps[:-1]:
        _, found = validate(scfg)
        name = suffix[1:]
        problems += [Problem(f"pipeline.before.{name}: {p.key}", p.value, p.message, p.allowed, p.fix, p.rule)
                     for p in found]
        if not scfg.train.do_train:
            problems.append(Problem(f"pipeline.before.{name}", None, "a chained step must train",
                                    fix=f"remove it or set pipeline.before.{name}.train.do_train=true"))
    main = steps[-1][1]
    if not (main.train.do_train or main.train.do_eval or main.train.do_predict or main.export.dir):
        problems.append(Problem(
            "train.do_train", False, "nothing to do: no training, evaluation, prediction or export was asked for",
            fix="train.do_train=true (recipes usually set it), or export.dir=<folder> to export the model"))
    return problems
