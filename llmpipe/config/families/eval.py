"""Eval family (``eval.*``): multiple-choice evaluation in the style of MMLU, CMMLU and C-Eval (LLaMA-Factory's
``EvaluationArguments``). Setting ``eval.task`` adds the ``mc_eval`` stage: the run's model (the trained one
when the run trains) reads each question under the chat template and its next-token logits over the choice
letters pick the answer (llmpipe.infer.multiple_choice). LLaMA-Factory's ``seed`` of an eval YAML is
``train.seed`` here (it draws the few-shot examples)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.config.meta import param

LANGS = ("en", "zh")
DOWNLOAD_MODES = ("reuse_dataset_if_exists", "reuse_cache_if_exists", "force_redownload")


@dataclass
class EvalConfig:
    task: Optional[str] = param(  # noqa: UP045  (OmegaConf reads Optional, as in the other families)
        None, "Multiple-choice task as <name>_<split>, LLaMA-Factory's spelling (mmlu_test, cmmlu_test,"
        " ceval_validation; mc_demo_test for the bundled set): <name> is a folder of eval.task_dir in"
        " LLaMA-Factory's layout (mapping.json and the dev/val/test CSV files, extracted or in <name>.zip) or the"
        " bundled mc_demo; <split> is test or validation. Set, it adds the mc_eval stage.", seed="task",
    )
    task_dir: str = param(
        "evaluation", "Folder that holds the task folders (LLaMA-Factory's evaluation/); relative to where"
        " llmpipe runs. A folder <task_dir>/<name> wins over the bundled set of the same name.", seed="task_dir",
    )
    n_shot: int = param(
        5, "Solved examples of the subject's dev split put before each question as earlier chat turns (0 ="
        " zero-shot); drawn with train.seed.", seed="n_shot", ge=0,
    )
    lang: str = param(
        "en", "Wording of the prompt: en (\"The following are multiple choice questions (with answers) about"
        " ...\", \"Answer:\") or zh (the Chinese wording of CMMLU/C-Eval).", seed="lang", choices=LANGS,
    )
    batch_size: int = param(4, "Questions scored per forward pass.", seed="batch_size", ge=1)
    save_dir: Optional[str] = param(  # noqa: UP045
        None, "Also write results.json and results.log here (a new folder: an existing, non-empty one is refused,"
        " as LLaMA-Factory refuses it); the stage's own copy is in the store either way.", seed="save_dir",
        volatile=True,
    )
    download_mode: str = param(
        "reuse_dataset_if_exists", "LLaMA-Factory's dataset download mode; accepted for its YAMLs.",
        seed="download_mode", choices=DOWNLOAD_MODES,
        effect="none: llmpipe reads eval tasks from local folders or the bundled set only; nothing is downloaded",
    )
