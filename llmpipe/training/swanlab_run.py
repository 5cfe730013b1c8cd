"""SwanLab (``train.report_to=swanlab``): llmpipe opens the run itself, with the ``train.swanlab_*`` settings,
before transformers' SwanLabCallback would open one with its defaults (the callback then logs into this run),
and closes it before the stage's outputs are written, so its files in the stage output are complete.

The run's files go to ``train.swanlab_logdir`` (default: ``swanlog/`` in the train stage's output). The API
key and the Lark secret are secrets: taken from the config or the environment (SWANLAB_API_KEY,
SWANLAB_LARK_SECRET), handed to swanlab.login / the Lark callback only, never written to a file.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

MODES = {"local": "local", "offline": "offline", "cloud": "online"}   # llmpipe (LLaMA-Factory) -> swanlab


def init_kwargs(cfg: Any, default_dir: Path) -> dict[str, Any]:
    """``swanlab.init`` arguments of the ``train.swanlab_*`` settings (no secrets)."""
    t = cfg.train
    kw: dict[str, Any] = {"project": t.swanlab_project, "mode": MODES[t.swanlab_mode],
                          "log_dir": str(Path(t.swanlab_logdir).expanduser() if t.swanlab_logdir else default_dir)}
    if t.swanlab_workspace:
        kw["workspace"] = t.swanlab_workspace
    name = t.swanlab_run_name or t.run_name
    if name:
        kw["name"] = name
    return kw


def _secret(cfg: Any, path: str) -> str | None:
    from llmpipe.secrets import secret_value

    return secret_value(path, getattr(cfg.train, path.split(".", 1)[1]))


def open_run(trainer: Any, cfg: Any, default_dir: Path) -> None:
    """Start the SwanLab run of ``trainer`` (on the main process only)."""
    if not trainer.is_world_process_zero():
        return
    import swanlab

    kw = init_kwargs(cfg, default_dir)
    Path(kw["log_dir"]).mkdir(parents=True, exist_ok=True)
    key = _secret(cfg, "train.swanlab_api_key")
    if kw["mode"] == "online" and key:
        swanlab.login(api_key=key, save=False)
    callbacks = []
    if cfg.train.swanlab_lark_webhook_url:
        from swanlab.plugin.notification import LarkCallback

        callbacks.append(LarkCallback(webhook_url=cfg.train.swanlab_lark_webhook_url,
                                      secret=_secret(cfg, "train.swanlab_lark_secret")))
    swanlab.init(reinit=True, callbacks=callbacks or None, **kw)


def finish_run() -> None:
    """Close the SwanLab run this process opened (nothing when SwanLab was not used)."""
    swanlab = sys.modules.get("swanlab")
    if swanlab is None:
        return
    try:   # imported (by transformers' integrations or an earlier run in this process) without an open run
        run = swanlab.get_run()
    except RuntimeError:   # SwanLab's "No active Run"
        return
    if run is not None:
        swanlab.finish()
