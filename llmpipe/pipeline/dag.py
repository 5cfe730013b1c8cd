"""The stage graph of one run, built from the configuration. It is data: nodes with their kind, their
effective config and their inputs, printable and inspectable (``run.dry_run=true``, ``llmpipe-tools plan``).

Shape: ``load -> adapt -> train -> merge -> quantize -> export -> push`` with only the stages the config needs
(adapt and merge only for LoRA; merge/export only when exporting; quantize with export.quantization_bit; push
with export.hub_model_id or export.push_to; without training, ``load [-> merge given adapters] -> export``), and one ``load[/adapt]/train[/merge]`` chain per entry
of ``pipeline.before`` in front of the main train stage (e.g. sft then dpo): each chained stage starts from
the previous one's model.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from llmpipe.config.root import LlmpipeConfig
from llmpipe.config.train_stages import TRAIN_STAGES, unused_families
from llmpipe.problems import Problem
from llmpipe.stages.base import StageKind
from llmpipe.stages.kinds import (ADAPT, EVALUATE, EXPORT, LOAD, MC_EVAL, MERGE, PREDICT, PUSH, QUANTIZE, REFERENCE,
                                  TRAIN)


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


class ChainError(ValueError):
    """A ``pipeline.before`` step whose overrides cannot be applied to the configuration."""

    def __init__(self, name: str, overrides: Any, message: str):
        super().__init__(f"pipeline.before.{name}: {message}")
        self.name, self.overrides, self.message = name, overrides, message


def _with_overrides(cfg: DictConfig, overrides: dict[str, Any]) -> DictConfig:
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.pipeline.before = {}
        for key, value in overrides.items():
            OmegaConf.update(out, str(key), value, merge=True)
        # A step does not inherit the main step's settings of families its stage never reads (pref.* for an sft
        # step, ppo.* for a dpo or rm step): a sweep over them must not re-run it. Its own overrides still apply.
        defaults = LlmpipeConfig()
        for family in unused_families(str(out.train.stage)):
            out[family] = OmegaConf.structured(getattr(defaults, family))
        for key, value in overrides.items():
            OmegaConf.update(out, str(key), value, merge=True)
    return out


def chain_configs(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(suffix, effective config) for every train step in order; the main step has suffix ''."""
    steps: list[tuple[str, DictConfig]] = []
    before = OmegaConf.to_container(cfg.pipeline.before, resolve=True) or {}
    for name, overrides in before.items():
        if not isinstance(overrides, dict):
            raise ChainError(name, overrides, "a chained step is a mapping of overrides, e.g. {train.stage: sft}")
        try:
            steps.append((f".{name}", _with_overrides(cfg, dict(overrides))))
        except OmegaConfBaseException as e:   # an unknown key, a wrong type: the step's overrides do not fit the schema
            key = getattr(e, "full_key", "") or "?"
            raise ChainError(name, overrides, f"{key}: {str(e).splitlines()[0]}") from None
    steps.append(("", cfg))
    return steps


def build_plan(cfg: DictConfig) -> Plan:
    """Nodes in execution order. Raises ConfigError-worthy problems via :func:`plan_problems` first."""
    from llmpipe.config.rules.ppo import reward_step

    nodes: list[Node] = []
    steps = chain_configs(cfg)
    previous_model: str | None = None
    step_train: dict[str, str] = {}     # step name -> its train node (for ppo.reward_model=step:<name>)
    for i, (suffix, scfg) in enumerate(steps):
        last = i == len(steps) - 1
        stage, ft = scfg.train.stage, scfg.train.finetuning_type
        base_inputs = {"base": previous_model} if previous_model else {}
        trains = bool(scfg.train.do_train)
        load = Node(f"load{suffix}", LOAD, scfg, dict(base_inputs), label=f"{stage} data, model")
        nodes.append(load)
        if not trains:
            if last and scfg.export.dir:   # export without training: the base model (+ given adapters merged)
                previous_model = _untrained_model(nodes, scfg, load)
            continue
        train_inputs = {"load": load.id}
        if ft == "lora":
            adapt = Node(f"adapt{suffix}", ADAPT, scfg, {"load": load.id}, label=f"lora r={scfg.lora.rank}")
            nodes.append(adapt)
            train_inputs["adapt"] = adapt.id
        ref = reward_step(scfg)
        if ref in step_train:
            train_inputs["reward"] = step_train[ref]
        reference = reference_node(scfg, suffix, load)
        if reference is not None:
            nodes.append(reference)
            train_inputs["reference"] = reference.id
        # PPO samples its own training data with generate.*: its train stage reads those settings too
        extra = TRAIN_STAGES[stage].reads
        kind = replace(TRAIN, reads=TRAIN.reads + extra) if extra else TRAIN
        train = Node(f"train{suffix}", kind, scfg, train_inputs, label=f"{stage} · {ft}" + _reference_note(scfg))
        nodes.append(train)
        step_train[suffix[1:]] = train.id
        if TRAIN_STAGES[stage].reward_model and not last:
            continue   # a reward model is used by reference (ppo.reward_model=step:<name>), not trained further
        model_node = train.id
        exporting = last and scfg.export.dir
        if ft == "lora" and (not last or exporting):
            merge = Node(f"merge{suffix}", MERGE, scfg, {"load": load.id, "train": train.id}, label="merge lora")
            nodes.append(merge)
            model_node = merge.id
        previous_model = model_node
    nodes += heldout_nodes(cfg, _last_load(nodes), previous_model if cfg.train.do_train else None)
    if cfg.export.dir and previous_model:
        nodes += export_nodes(cfg, previous_model, nodes)
    return Plan(nodes)


def reference_node(cfg: DictConfig, suffix: str, load: Node) -> Node | None:
    """The reference stage of a dpo/kto step when the plan rule picks it (llmpipe.config.rules.reference_plan)."""
    from llmpipe.config.rules.reference_plan import VISIT_KEYS, decide, has_reference, visit_steps

    if not has_reference(cfg):
        return None
    staged, reason = decide(cfg)
    if not staged:
        return None
    extra: tuple[str, ...] = ()
    if cfg.train.stage == "kto":   # KTO's KL completions rotate within each per-device batch
        extra += ("train.per_device_train_batch_size",)
    if visit_steps(cfg) is not None:   # it scores only the rows the run's steps read
        extra += tuple(k for k in VISIT_KEYS if k not in extra)
    kind = replace(REFERENCE, reads=REFERENCE.reads + extra) if extra else REFERENCE
    return Node(f"reference{suffix}", kind, cfg, {"load": load.id}, label=f"reference log-probs: {reason}")


def _reference_note(cfg: DictConfig) -> str:
    from llmpipe.config.rules.reference_plan import decide, has_reference

    if not has_reference(cfg):
        return ""
    staged, reason = decide(cfg)
    return " · reference from its stage" if staged else f" · reference inline: {reason}"


def _untrained_model(nodes: list[Node], cfg: DictConfig, load: Node) -> str:
    if cfg.train.finetuning_type == "lora" and str(cfg.model.adapter_name_or_path or "").strip(","):
        merge = Node("merge", MERGE, cfg, {"load": load.id}, label="merge given adapters")
        nodes.append(merge)
        return merge.id
    return load.id


def export_nodes(cfg: DictConfig, model: str, nodes: list[Node]) -> list[Node]:
    """[quantize ->] export [-> push] of ``model``; export also sees the last train and merge stages (model card)."""
    load = _last_load(nodes)
    out = []
    if cfg.export.quantization_bit is not None:
        out.append(Node("quantize", QUANTIZE, cfg, {"model": model, "load": load},
                        label=f"gptq {cfg.export.quantization_bit}-bit"))
    inputs = {"model": out[-1].id if out else model, "load": load}
    for kind in (TRAIN, MERGE):
        last = [n.id for n in nodes if n.kind.name == kind.name]
        if last:
            inputs[kind.name] = last[-1]
    out.append(Node("export", EXPORT, cfg, inputs, label=str(cfg.export.dir)))
    targets = [str(t) for t in (cfg.export.hub_model_id, cfg.export.push_to) if t]
    if targets:
        out.append(Node("push", PUSH, cfg, {"export": "export"}, label=", ".join(targets)))
    return out


def heldout_nodes(cfg: DictConfig, load: str, model: str | None) -> list[Node]:
    """evaluate (train.do_eval; pt/sft data) and predict (train.do_predict) on the main step's held-out split,
    of the trained model when the main step trains, else of the base model (+ model.adapter_name_or_path)."""
    inputs = {"load": load, **({"model": model} if model else {})}
    out = []
    if cfg.train.do_eval and TRAIN_STAGES[cfg.train.stage].evaluates:
        out.append(Node("evaluate", EVALUATE, cfg, dict(inputs), label="loss, perplexity"
                        + (", accuracy" if cfg.train.compute_accuracy else "")))
    if cfg.train.do_predict:
        out.append(Node("predict", PREDICT, cfg, dict(inputs), label=f"generate ({cfg.infer.backend})"))
    if cfg.eval.task:   # with eval.save_dir it runs every time, so that the folder is written, into an entry of
        # its own (another version): the cached kind's entry of the same fingerprint is published atomically
        kind = replace(MC_EVAL, cached=False, version=MC_EVAL.version + "+save_dir") if cfg.eval.save_dir else MC_EVAL
        out.append(Node("mc_eval", kind, cfg, dict(inputs), label=f"{cfg.eval.task}, {cfg.eval.n_shot}-shot"))
    return out


def _last_load(nodes: list[Node]) -> str:
    return [n.id for n in nodes if n.kind is LOAD][-1]


def plan_problems(cfg: DictConfig) -> list[Problem]:
    """Problems only visible once the graph is known (nothing to do; chained steps that are invalid)."""
    from llmpipe.pipeline.preflight import validate

    problems: list[Problem] = []
    try:
        steps = chain_configs(cfg)
    except ChainError as e:
        return [Problem(f"pipeline.before.{e.name}", e.overrides, e.message,
                        "llmpipe parameters with values of their type (`llmpipe-tools explain <key>`)",
                        f"fix pipeline.before.{e.name}", rule="pipeline-step")]
    for suffix, scfg in steps[:-1]:
        _, found = validate(scfg)
        name = suffix[1:]
        problems += [Problem(f"pipeline.before.{name}: {p.key}", p.value, p.message, p.allowed, p.fix, p.rule)
                     for p in found]
        if not scfg.train.do_train:
            problems.append(Problem(f"pipeline.before.{name}", None, "a chained step must train",
                                    fix=f"remove it or set pipeline.before.{name}.train.do_train=true"))
    from llmpipe.config.rules.ppo import step_problems

    problems += step_problems(steps)
    main = steps[-1][1]
    if not (main.train.do_train or main.train.do_eval or main.train.do_predict or main.export.dir or main.eval.task):
        problems.append(Problem(
            "train.do_train", False, "nothing to do: no training, evaluation, prediction or export was asked for"
            " (an inference config, such as LLaMA-Factory's inference YAMLs, runs with `python -m llmpipe.chat` or"
            " `python -m llmpipe.serve` and the same arguments)",
            fix="python -m llmpipe.chat <same arguments> to talk to the model, python -m llmpipe.serve <same"
                " arguments> for an OpenAI-style server; or train.do_train=true (recipes usually set it), or"
                " export.dir=<folder> to export the model"))
    return problems
