"""SwanLab rules (train.report_to=swanlab, llmpipe.training.swanlab_run): its settings only with it, and a cloud
run that can log in without asking."""
from __future__ import annotations

import os

from llmpipe.config.environment import offline
from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import get, problem, stage

SETTINGS = {"train.swanlab_project": "llmpipe", "train.swanlab_workspace": None, "train.swanlab_run_name": None,
            "train.swanlab_mode": "local", "train.swanlab_api_key": None, "train.swanlab_logdir": None,
            "train.swanlab_lark_webhook_url": None, "train.swanlab_lark_secret": None}


def _on(cfg) -> bool:
    return "swanlab" in (get(cfg, "train.report_to") or []) or "all" in (get(cfg, "train.report_to") or [])


@rule("swanlab-settings", keys=list(SETTINGS) + ["train.report_to", "train.stage"],
      bad=[["train.swanlab_project=p"], ["train.report_to=swanlab", "train.swanlab_lark_secret=s"],
           ["train.report_to=swanlab", "train.swanlab_mode=cloud"], ["train.report_to=swanlab", "train.swanlab_api_key=k1"]],
      good=[["train.report_to=swanlab", "train.swanlab_project=p", "train.swanlab_mode=offline"],
            ["train.report_to=swanlab", "train.swanlab_lark_webhook_url=https://example.org/hook",
             "train.swanlab_lark_secret=s"]],
      env={"available_packages": frozenset({"swanlab"})})
def settings(cfg, env):
    """train.swanlab_* act only when SwanLab tracks the run (train.report_to=swanlab) through the Trainer (not
    PPO's loop); the Lark secret signs a webhook; a cloud run needs its API key (SwanLab would ask for one)."""
    changed = [k for k, d in SETTINGS.items() if get(cfg, k) not in (d, "")]
    if not changed:
        return
    if not _on(cfg) or stage(cfg) == "ppo":
        why = ("SwanLab does not track this run (train.report_to has no swanlab)" if not _on(cfg) else
               "PPO logs through accelerate's trackers, which take none of these settings")
        for key in changed:
            shown = "<redacted>" if key in ("train.swanlab_api_key", "train.swanlab_lark_secret") else get(cfg, key)
            yield problem("swanlab-settings", key, shown, why, "train.report_to=swanlab with a Trainer stage, or unset",
                          "train.report_to=swanlab")
        return
    if get(cfg, "train.swanlab_lark_secret") and not get(cfg, "train.swanlab_lark_webhook_url"):
        yield problem("swanlab-settings", "train.swanlab_lark_secret", "<redacted>", "signs Lark webhook calls, but"
                      " train.swanlab_lark_webhook_url is unset", "with the webhook, or unset",
                      "train.swanlab_lark_webhook_url=<url>")
    if get(cfg, "train.swanlab_api_key") and get(cfg, "train.swanlab_mode") != "cloud":
        yield problem("swanlab-settings", "train.swanlab_api_key", "<redacted>", "logs in to SwanLab's cloud, and"
                      f" train.swanlab_mode={get(cfg, 'train.swanlab_mode')} never does", "with swanlab_mode=cloud, or"
                      " unset", "train.swanlab_mode=cloud, or remove the key")
    if get(cfg, "train.swanlab_mode") == "cloud":
        var = offline()
        if var:
            yield problem("swanlab-settings", "train.swanlab_mode", "cloud", f"uploads to SwanLab's cloud, but {var}"
                          " puts this run offline", "local or offline", "train.swanlab_mode=offline")
        elif not (get(cfg, "train.swanlab_api_key") or os.environ.get("SWANLAB_API_KEY")):
            yield problem("swanlab-settings", "train.swanlab_mode", "cloud", "needs an API key to log in (SwanLab"
                          " would stop to ask for one)", "SWANLAB_API_KEY in the environment, or local/offline",
                          "export SWANLAB_API_KEY=<key>, or train.swanlab_mode=local")
