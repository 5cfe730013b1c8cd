"""What ``python -m llmpipe.chat`` and ``python -m llmpipe.serve`` share: compose the configuration from the
same Hydra overrides as the main app, open its session (pre-flight rules, exit 2 on problems), take the
configuration's trained result from the store (the plan's fingerprints, then the last complete model stage:
export, merge or train) or fall back to the base model, and open the backend on it. Also the command-line
tail both programs share (clean errors, the ``llmpipe-tools chat|serve`` subcommands)."""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any, Callable

USAGE = """usage: python -m {prog} [HYDRA OVERRIDES...]

The same overrides as `python -m llmpipe`: +recipe=NAME, model=..., generate.*, infer.*, data.template,
data.default_system{extra}. Talks to the recipe's trained result when the store holds it (run
`python -m llmpipe` with the same overrides first), else to the base model (model.name_or_path, plus
model.adapter_name_or_path), and says which.
"""


@dataclass
class ModelSession:
    obj: Any                  # typed, validated configuration
    ref: Any                  # ModelRef of the model being served
    backend: Any
    prompter: Any
    recipe: str | None
    note: str                 # how the model was chosen, for people
    vision: Any = None        # a vision-language model's image input (llmpipe.infer.mm_request.Vision), else None


def _compose(argv: list[str]):
    from llmpipe.config.compose import compose
    from llmpipe.config.diagnose import explain_composition_failure

    try:
        return compose(argv, return_hydra_config=True, job_name="llmpipe_tools")
    except Exception as e:   # an override Hydra rejects, a recipe it cannot find...
        print(f"llmpipe: {str(e).splitlines()[0]}", file=sys.stderr)
        explain_composition_failure(argv)
        raise SystemExit(2) from None


def open_pipeline(argv: list[str]):
    """(pipeline Session, recipe name) from command-line overrides; exits 2 on a bad configuration."""
    from llmpipe import secrets
    from llmpipe.pipeline.session import Session
    from llmpipe.problems import exit_with
    from llmpipe.safety import hydra_settings_in_recipes

    untrusted = hydra_settings_in_recipes(argv)
    if untrusted:
        exit_with(untrusted)
    cfg = _compose(argv)
    recipe = cfg.hydra.runtime.choices.get("recipe") if "hydra" in cfg else None
    secrets.take_from_config(cfg)
    return Session.open(cfg, inference=True), recipe


def open_session(argv: list[str], prog: str, extra_usage: str = "") -> ModelSession:
    from llmpipe.infer.backends import load_prompter, open_backend
    from llmpipe.infer.mm_request import vision_for
    from llmpipe.models.quiet import quiet_libraries

    if any(a in ("-h", "--help") for a in argv):
        print(USAGE.format(prog=prog, extra=extra_usage))
        raise SystemExit(0)
    pipeline, recipe = open_pipeline(argv)
    quiet_libraries()
    _quiet_transformers()
    ref, note = pipeline.trained_model()
    with contextlib.redirect_stdout(sys.stderr):   # library banners while loading stay off the conversation
        prompter = load_prompter(ref.tokenizer, pipeline.obj)
        backend = open_backend(pipeline.obj, ref, prompter)
    vision = vision_for(ref, pipeline.obj, prompter.tokenizer)
    return ModelSession(pipeline.obj, ref, backend, prompter, recipe, note, vision)


def _quiet_transformers() -> None:
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover - only cosmetics
        pass


def run_clean(main: Callable[[list[str]], int | None], argv: list[str], prog: str) -> int:
    """Run ``main(argv)``; errors meant for users (llmpipe.errors.UserError) are printed without a traceback."""
    from llmpipe.errors import UserError

    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        return 130
    except UserError as e:
        print(f"{prog}: {e}", file=sys.stderr, flush=True)
        return e.exit_code


class Program:
    """The command-line tail of an interactive program (chat, serve): ``python -m <module>``, and its
    ``llmpipe-tools`` subcommand (``setup``/``run``, listed in llmpipe.tools.cli)."""

    def __init__(self, main: Callable[[list[str]], int | None], prog: str):
        self.main, self.prog = main, prog

    def main_clean(self, argv: list[str]) -> int:
        return run_clean(self.main, argv, self.prog)

    def setup(self, parser) -> None:
        parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m llmpipe (e.g. +recipe=demo)")

    def run(self, args) -> int:
        return self.main_clean(list(args.overrides))

    def cli(self) -> None:
        sys.exit(self.main_clean(sys.argv[1:]))
