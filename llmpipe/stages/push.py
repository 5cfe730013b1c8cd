"""push: publish the finished export folder — to a git remote (export.push_to, as one commit on main) and/or
to the Hugging Face Hub (export.hub_model_id, token from HF_TOKEN in the environment). A cached stage: it
re-runs only when the export or the destination changes (run.force=[push] pushes again). A failed push
leaves the local export complete and untouched. Publishes: push.json (where it went, which commit)."""
from __future__ import annotations

import json
from pathlib import Path

from llmpipe.exporting.errors import PushError
from llmpipe.stages.base import StageContext


def run(ctx: StageContext) -> dict:
    from llmpipe.exporting import git_push, hub_push
    from llmpipe.exporting.folder import MARKER, read_marker

    o = ctx.obj.export
    folder = Path(ctx.input("export"))
    marker = read_marker(folder)
    if marker is None:
        raise PushError(f"{folder} is not a finished llmpipe export (no {MARKER}); nothing was pushed")
    message = f"llmpipe export {Path(folder).name} ({marker['fingerprint'][:12]})"
    record: dict = {"export": str(folder), "fingerprint": marker["fingerprint"]}
    from llmpipe.heartbeat import Heartbeat

    if o.push_to:
        with Heartbeat(f"push: git push to {o.push_to}"):
            record["git"] = git_push.push(folder, str(o.push_to), work=ctx.work / "git", message=message,
                                          log=ctx.log, secret_env=ctx.secret_env)
    if o.hub_model_id:
        with Heartbeat(f"push: upload to the Hub ({o.hub_model_id})"):
            record["hub"] = hub_push.push(folder, str(o.hub_model_id), token=hub_push.hub_token(ctx.secret_env),
                                          message=message, log=ctx.log)
    (ctx.out / "push.json").write_text(json.dumps(record, indent=2))
    metrics = {}
    if "git" in record:
        metrics["git_commit"] = record["git"]["commit"]
    if "hub" in record:
        metrics["hub_commit"] = record["hub"]["commit"]
    return {"metrics": metrics}
