"""mc_eval: multiple-choice evaluation (``eval.task``, MMLU/CMMLU/C-Eval style) of the final model of the run
(or of the base model, with model.adapter_name_or_path, when nothing is trained), as predict and evaluate pick
theirs. The questions come from llmpipe.data.mc_tasks, the scores from llmpipe.infer.multiple_choice.

Publishes ``results.json`` (task, split, n_shot, lang; ``accuracy``: Average and per category, fractions in
[0, 1]; ``subjects``: accuracy, correct, questions, name and category of each; ``predictions``: each answer;
``first_prompts``: the first question of each subject as the model read it)
and ``results.log`` (the same accuracies in percent), and copies both into ``eval.save_dir`` when it is set.
"""
from __future__ import annotations

import json
import re
import shutil

from llmpipe.stages.base import StageContext

FILES = ("results.json", "results.log")


def run(ctx: StageContext) -> dict:
    from llmpipe.errors import UserError
    from llmpipe.infer import multiple_choice as mc
    from llmpipe.infer.engine import load_prompter
    from llmpipe.infer.hf_backend import load_model
    from llmpipe.infer.model_ref import from_stage_inputs

    obj = ctx.obj
    load_dir = ctx.input("load")
    ref = from_stage_inputs(obj, load_dir, ctx.inputs.get("model"))
    prompter = load_prompter(ref.tokenizer, obj)
    job = mc.job_from_config(obj)
    rendered = mc.render(job, prompter)
    total = sum(len(r.prompts) for r in rendered)
    ctx.log(f"{ref.origin}: {ref.model}{' + ' + ', '.join(ref.adapters) if ref.adapters else ''}; {job.task} "
            f"({job.source}): {len(job.subjects)} subjects, {total} questions, {job.n_shot}-shot, {job.lang}")
    model = load_model(ref, obj)
    results = mc.evaluate(rendered, model, prompter.tokenizer, job.batch_size, log=ctx.log)
    results = {"task": job.task, "split": job.split, "n_shot": job.n_shot, "lang": job.lang, "source": job.source,
               "model": ref.describe(), **results,
               # what the model read: the first question of each subject, rendered under the chat template
               "first_prompts": {r.subject.key: prompter.tokenizer.decode(r.prompts[0]) for r in rendered if r.prompts}}
    ctx.out.mkdir(parents=True, exist_ok=True)   # with eval.save_dir the stage is not cached: the runner makes no folder
    (ctx.out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    (ctx.out / "results.log").write_text(mc.score_log(results), encoding="utf-8")
    if job.save_dir:
        from pathlib import Path

        dest = Path(job.save_dir).expanduser()
        if dest.exists() and any(dest.iterdir()):
            raise UserError(f"eval.save_dir={job.save_dir} already exists and is not empty (pre-flight found it free:"
                            f" something wrote there during the run); the results are in {ctx.out}")
        dest.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            shutil.copyfile(ctx.out / f, dest / f)
        ctx.log(f"results copied to {dest}")
    ctx.log(", ".join(f"{cat} {100 * acc:.1f} %" for cat, acc in results["accuracy"].items()))
    metrics = {"mc_accuracy": results["accuracy"]["Average"], "mc_questions": results["questions"]}
    for cat, acc in results["accuracy"].items():
        if cat != "Average":
            metrics[f"mc_accuracy_{re.sub(r'[^0-9a-z]+', '_', cat.lower()).strip('_')}"] = acc
    return {"metrics": metrics}
