"""What ``python -m llmpipe.chat`` and ``python -m llmpipe.serve`` share: compose the configuration from the
same Hydra overrides as the main app, validate it (pre-flight rules, exit 2 on problems), find the
configuration's trained result in the store (the plan's fingerprints, then the last complete model stage:
export, merge or train) or fall back to the base model, and open the backend on it."""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any

USAGE = """usage: python -m {prog} [HYDRA OVERRIDES...]

The same overrides as `python -m llmpipe`: +recipe=NAME, model=..., generate.*, infer.*, data.template,
data.default_system{extra}. Talks to the recipe's trained result when the store holds it (run
`python -m llmpipe` with the same overrides first), else to the base model (model.name_or_path, plus
model.adapter_name_or_path), and says which.
"""


@dataclass
class Session:
    obj: Any                  # typed, validated configuration
    ref: Any                  # ModelRef of the model being served
    backend: Any
    prompter: Any
    recipe: str | None
    note: str                 # how the model was chosen, for people


def _compose(argv: list[str]):
    from llmpipe.config.diagnose import explain_composition_failure
    from llmpipe.tools.recipes import compose

    try:
        return compose(argv, return_hydra_config=True)
    except Exception as e:   # an override Hydra rejects, a recipe it cannot find...
        print(f"llmpipe: {str(e).splitlines()[0]}", file=sys.stderr)
        explain_composition_failure(argv)
        raise SystemExit(2) from None


def prepare_session(argv: list[str]):
    """(validated config, plan, recipe name) from command-line overrides; exits 2 on a bad configuration."""
    from llmpipe import secrets
    from llmpipe.app import prepare
    from llmpipe.config.problems import exit_with
    from llmpipe.safety import hydra_settings_in_recipes

    untrusted = hydra_settings_in_recipes(argv)
    if untrusted:
        exit_with(untrusted)
    cfg = _compose(argv)
    recipe = cfg.hydra.runtime.choices.get("recipe") if "hydra" in cfg else None
    secrets.take_from_config(cfg)
    validated, plan = prepare(cfg, inference=True)
    return validated, plan, recipe


def choose_model(validated, plan):
    """(ModelRef, note): the trained result in the store, else the base model."""
    from llmpipe.infer.model_ref import base_model, find_in_store
    from llmpipe.pipeline.runner import compute_fingerprints
    from llmpipe.pipeline.store import Store

    store = Store(validated.obj.run.cache_root)
    compute_fingerprints(plan, store.root)
    ref = find_in_store(plan, store)
    if ref is not None:
        return ref, f"the configuration's trained result from the store ({store.root})"
    trains = any(n.kind.name == "train" for n in plan.nodes)
    why = ("this configuration's training has not run yet: `python -m llmpipe` with the same overrides runs it"
           if trains else "the configuration trains nothing")
    return base_model(validated.obj, store.root), f"the base model ({why})"


def open_session(argv: list[str], prog: str, extra_usage: str = "") -> Session:
    from llmpipe.app import quiet_libraries
    from llmpipe.infer.engine import load_prompter, open_backend

    if any(a in ("-h", "--help") for a in argv):
        print(USAGE.format(prog=prog, extra=extra_usage))
        raise SystemExit(0)
    validated, plan, recipe = prepare_session(argv)
    quiet_libraries()
    _quiet_transformers()
    ref, note = choose_model(validated, plan)
    with contextlib.redirect_stdout(sys.stderr):   # library banners while loading stay off the conversation
        prompter = load_prompter(ref.tokenizer, validated.obj)
        backend = open_backend(validated.obj, ref, prompter)
    return Session(validated.obj, ref, backend, prompter, recipe, note)


def _quiet_transformers() -> None:
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover - only cosmetics
        pass


def add_overrides_argument(parser) -> None:
    """``llmpipe-tools chat|serve``: the Hydra overrides, as for ``python -m llmpipe``."""
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m llmpipe (e.g. +recipe=demo)")


def run_clean(main, argv: list[str], prog: str) -> int:
    """Run ``main(argv)``; errors whose message says everything are printed without a traceback (exit 1)."""
    from llmpipe.app import _CLEAN_ERRORS

    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if type(e).__name__ in _CLEAN_ERRORS:
            print(f"{prog}: {e}", file=sys.stderr, flush=True)
            return 1
        raise
