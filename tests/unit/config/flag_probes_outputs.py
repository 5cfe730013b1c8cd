"""Probes of tests/unit/config/test_flag_effects.py (see flag_probes.py) of what a run leaves and loads: the sweep
summary, the collator, the model card, training outputs, the load/adapt stages, adapters, placement, the final
link.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.unit.config.flag_probes import (
    Case,
    _cpu_tiny,
    _jsonable,
    _patched,
    _word_tokenizer,
    probe,
)


@probe("sweep summary")
def sweep_summary(case: Case) -> Any:
    """hydra_callbacks.PreflightCallback.on_multirun_end on the case's configuration (with a hydra.sweep.dir) over
    a results table of two jobs (objective 0.5 and 0.7): the summary it prints, whose best job follows
    run.objective_mode (the plot and the global HydraConfig left out)."""
    import contextlib
    import io

    from omegaconf import OmegaConf

    import llmpipe.hydra_callbacks as callbacks
    import llmpipe.pipeline.sweep as sweep

    folder = case.workdir / "sweep"
    if not folder.exists():
        for job, value in ((0, 0.5), (1, 0.7)):
            sweep.append_row(folder, {"job": job, "overrides": f"lora.rank={8 * (job + 1)}", "objective": "eval_loss",
                                      "value": value, "stages_ran": 1, "stages_cached": 0, "metrics": {},
                                      "job_dir": f"job{job}"})
    config = OmegaConf.create(OmegaConf.to_container(case.cfg, resolve=False))
    config.hydra = {"sweep": {"dir": str(folder)}}
    out = io.StringIO()
    patches = [(callbacks, "expose_master_config", lambda _c: None), (sweep, "plot_results", lambda *_a: None)]
    with contextlib.redirect_stdout(out):
        _patched(patches, lambda: callbacks.PreflightCallback().on_multirun_end(config))
    return out.getvalue().replace(str(folder), "<sweep>")


@probe("causal collator")
def causal_collator(case: Case) -> Any:
    """training/padding_free.causal_collator as train_causal calls it, for the CPU tiny model and tokenized rows:
    the collator it returns (padded or padding-free) and what it logs."""
    if "collator" in case._cache:
        return case._cache["collator"]
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq

    from llmpipe.training.padding_free import causal_collator as make

    rows = Dataset.from_dict({"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 1]], "labels": [[1, 2, 3]]})
    log: list = []
    collator = make(case.obj, _cpu_tiny(), rows, DataCollatorForSeq2Seq(_word_tokenizer()), log.append)
    case._cache["collator"] = [type(collator).__name__, log]
    return case._cache["collator"]


@probe("model card")
def model_card(case: Case) -> Any:
    """exporting/card.render for an export without training (the run's name is in the card's table)."""
    from llmpipe.exporting.card import render

    return render(case.obj, fingerprint="f", title="t", adapters=[], train=None, merge=None, quantize=None,
                  verified={}, weights={"shards": 1, "total_bytes": 0})


@probe("training outputs")
def training_outputs(case: Case) -> Any:
    """training/causal.save_outputs after a (recorded) one-step training: what it saves where, the files it
    writes, and the loss plot it asks for (training/plot.save_loss_plot recorded: no matplotlib drawing)."""
    from types import SimpleNamespace

    import llmpipe.models.trainable as trainable
    import llmpipe.training.plot as plot
    from llmpipe.training.causal import save_outputs

    calls: list = []
    out = case.workdir / "train-out"
    out.mkdir(exist_ok=True)
    trainer = SimpleNamespace(model=None, args=SimpleNamespace(world_size=1),
                              state=SimpleNamespace(log_history=[{"loss": 1.0, "step": 1}]))
    ctx = SimpleNamespace(obj=case.obj, out=out, initial_adapter=None, log=lambda _m: None, name="train")
    patches = [(trainable, "save", lambda _m, where, *_a, **_k: calls.append(["save", where.name])),
               (plot, "save_loss_plot", lambda _h, path, title, _log: calls.append(["plot", path.name, title]))]
    _patched(patches, lambda: save_outputs(ctx, trainer, SimpleNamespace(save_pretrained=lambda _p: None), {}))
    return [calls, sorted(p.name for p in out.iterdir())]


@probe("TrainingArguments.use_cpu on a GPU machine")
def use_cpu(case: Case) -> Any:
    """training/args.training_arguments where CUDA is reported available (args._cuda): whether it keeps training on
    the CPU. Without a GPU every run trains on the CPU, whatever train.use_cpu says."""
    import llmpipe.training.args as args

    ta = _patched([(args, "_cuda", lambda: True)],
                  lambda: args.training_arguments(case.obj, Path("flag-effect-out"), has_eval=True))
    return ta.use_cpu


@probe("load and adapt stages")
def load_and_adapt(case: Case) -> Any:
    """The model the load stage starts from (stages/load.base_model_source, with the built-in model builder
    recorded) and stages/adapt.run on the CPU tiny model (weights loading and PEFT's adapter loading recorded):
    the adapter it creates or resumes, and from where."""
    if "adapt" in case._cache:
        return case._cache["adapt"]
    from types import SimpleNamespace

    import peft

    import llmpipe.models.builtin as builtin
    import llmpipe.models.loading as loading
    import llmpipe.stages.adapt as adapt
    from llmpipe.stages.load import base_model_source

    calls: list = []

    def peft_load(model, ref, **kw):
        calls.append(["PeftModel", os.path.relpath(str(ref), case.workdir.parent), kw])
        return peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))

    out = case.workdir / "adapt-out"
    out.mkdir(exist_ok=True)
    ctx = SimpleNamespace(obj=case.obj, inputs={}, input=lambda _k: case.workdir, out=out, cache_root=case.workdir,
                          log=lambda _m: None)
    patches = [(builtin, "ensure_builtin", lambda name, _root: (calls.append(["builtin", name]), name)[1]),
               (loading, "load_causal_lm", lambda source, *_a, **_k: _cpu_tiny()),
               (adapt, "read_source", lambda _d: "base"),
               (peft.PeftModel, "from_pretrained", staticmethod(peft_load))]

    def run():
        calls.append(["load", base_model_source(ctx)])
        calls.append(["adapt", adapt.run(ctx)["metrics"], json.loads((out / "params.json").read_text())["adapter"]])

    _patched(patches, run)
    case._cache["adapt"] = _jsonable(calls)
    return case._cache["adapt"]


@probe("adapter saving")
def adapter_saving(case: Case) -> Any:
    """models/trainable.save of a LoRA model made by the case's LoRA config on the CPU tiny model (PiSSA: its
    initial adapter saved first, as the adapt stage publishes it): what it saves and the saved adapter's rank."""
    if "adapter saving" in case._cache:
        return case._cache["adapter saving"]
    from peft import get_peft_model

    from llmpipe.models.adapters import lora_config
    from llmpipe.models.trainable import save

    model = _cpu_tiny()
    model = get_peft_model(model, lora_config(case.obj, model))
    initial, out = case.workdir / "initial-adapter", case.workdir / "saved-adapter"
    model.save_pretrained(str(initial))
    log: list = []
    save(model, out, case.obj, log=log.append, initial_adapter=initial)
    saved = json.loads((out / "adapter_config.json").read_text())
    case._cache["adapter saving"] = _jsonable([log, saved.get("r"), str(saved.get("init_lora_weights"))])
    return case._cache["adapter saving"]


@probe("model placement")
def placement(case: Case) -> Any:
    """The from_pretrained keywords that quantize and place the weights (device map, offload folder)."""
    import torch

    from llmpipe.models.loading import placement_kwargs

    kw = placement_kwargs(case.obj, torch.bfloat16, quantize=case.obj.quantization.bit is not None)
    qc = kw.get("quantization_config")
    return _jsonable({**kw, "quantization_config": qc.to_dict() if qc is not None else None})


@probe("adapter loading")
def adapter_loading(case: Case) -> Any:
    """The keywords every adapter of model.adapter_name_or_path is loaded with (merge and export included)."""
    from llmpipe.models.adapters import _load_kwargs

    return _jsonable(_load_kwargs(case.obj))


@probe("final model link")
def final_link(case: Case) -> Any:
    """The folder the final model is linked into after a run (train.output_dir, relative to the job folder)."""
    from llmpipe.pipeline.outputs import output_folder

    folder = output_folder(case.obj.train.output_dir, case.workdir)
    return None if folder is None else str(folder)
