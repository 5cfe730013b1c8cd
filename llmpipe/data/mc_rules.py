"""Pre-flight rules of the multiple-choice evaluation (``eval.*``): the task must be one llmpipe can read (a
local folder in LLaMA-Factory's layout or the bundled set), and ``eval.save_dir`` must be a new folder, as
LLaMA-Factory requires. Registered in llmpipe.config.rulebook by importing this module (llmpipe.pipeline.preflight)."""
from __future__ import annotations

from pathlib import Path

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import get, problem
from llmpipe.data.mc_tasks import BUNDLED, SPLITS, locate

TASK = "eval.task=mc_demo_test"


@rule("eval-task", keys=["eval.task", "eval.task_dir"],
      bad=[["eval.task=no_such_task_test"], ["eval.task=mc_demo"], ["eval.task=mc_demo_dev"]],
      good=[[TASK], ["eval.task=mc_demo_validation", "eval.n_shot=0"]])
def task_known(cfg, env):
    """eval.task is <name>_<split>, and <name> is a folder of eval.task_dir with a mapping.json, or bundled."""
    task = get(cfg, "eval.task")
    if not task:
        return
    task_dir = get(cfg, "eval.task_dir", "evaluation")
    try:
        locate(str(task), str(task_dir))
    except ValueError as e:
        yield problem("eval-task", "eval.task", task, str(e),
                      f"<name>_<split>: <split> one of {', '.join(SPLITS)}; <name> a folder of eval.task_dir"
                      f" ({Path(str(task_dir)).expanduser().absolute()}) holding mapping.json, or bundled:"
                      f" {', '.join(BUNDLED)}",
                      "eval.task=mc_demo_test, or eval.task_dir=<the folder that holds your task folders>")


@rule("eval-save-dir", keys=["eval.save_dir", "eval.task"],
      bad=[[TASK, "eval.save_dir=/"], ["eval.save_dir=/tmp/llmpipe-no-such-results"]],
      good=[[TASK, "eval.save_dir=/tmp/llmpipe-no-such-results"], [TASK]])
def save_dir_new(cfg, env):
    """eval.save_dir receives the results of eval.task, in a folder that does not hold anything yet."""
    dest = get(cfg, "eval.save_dir")
    if not dest:
        return
    if not get(cfg, "eval.task"):
        yield problem("eval-save-dir", "eval.save_dir", dest, "only applies to a multiple-choice evaluation, and"
                      " eval.task is unset", "eval.save_dir together with eval.task",
                      "eval.task=<name>_<split> (e.g. mc_demo_test), or drop eval.save_dir")
        return
    path = Path(str(dest)).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        yield problem("eval-save-dir", "eval.save_dir", dest, "already exists and is not empty; the results of a"
                      " run go into a new folder (as LLaMA-Factory's eval requires)",
                      "a folder that does not exist yet (or an empty one)", "eval.save_dir=<a new folder>")
