"""``llmpipe-tools plan [overrides...]``: the stage graph of a configuration, with fingerprints and what
would run or come from the store, as a table or JSON. Imports no torch."""
from __future__ import annotations

import argparse
import json


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m llmpipe (e.g. +recipe=demo)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace) -> int:
    from llmpipe.config.compose import compose
    from llmpipe.pipeline.session import Session

    session = Session.open(compose(list(args.overrides)))
    plan, store, runner = session.plan, session.store, session.runner()
    if args.json:
        data = plan.to_dict()
        for node in plan.nodes:
            data[node.id]["status"] = runner.status_of(node)
            data[node.id]["reads"] = node.reads
        print(json.dumps({"store": str(store.root), "stages": data}, indent=2, default=str))
    else:
        print(f"store: {store.root}")
        print(runner.describe())
    return 0
