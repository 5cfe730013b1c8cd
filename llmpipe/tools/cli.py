"""``llmpipe-tools``: the tooling console script, kept apart from the Hydra app (which owns its argv).

    llmpipe-tools explain lora_rank            where a LLaMA-Factory flag lives, and what it means
    llmpipe-tools import-llamafactory x.yaml   a flat LLaMA-Factory YAML -> an llmpipe recipe
    llmpipe-tools ls                           recipes of every recipe source, duplicates flagged
    llmpipe-tools docs [--write]               docs/parameters.md from the schema
    llmpipe-tools plan +recipe=demo [--json]   the stage graph, fingerprints, run or cached
    llmpipe-tools lock JOB_A [JOB_B]           a job's stages, or why they differ between two jobs
    llmpipe-tools chat +recipe=demo            chat with the recipe's trained model (python -m llmpipe.chat)
    llmpipe-tools serve +recipe=demo           OpenAI-compatible server (python -m llmpipe.serve)
    llmpipe-tools ui [--port P]                local web page: runs, sweeps, run diffs, recipe composer
    llmpipe-tools templates [NAME]             the named chat templates: family, stop words, thinking, tools

Adding a subcommand is one entry in :data:`COMMANDS` (or a :func:`register` call): a loader that imports
its module and returns ``setup(parser)`` and ``run(args) -> exit code``. Nothing here imports torch; modules
are imported only for the subcommand that runs.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence


@dataclass(frozen=True)
class Command:
    help: str
    load: Callable[[], tuple[Callable, Callable]]   # -> (setup(parser), run(args) -> exit code); imports lazily
    names_only: bool = False    # every argument after the command is a name (so `--no_x` is not an option)


# Each loader imports its module only when that subcommand runs (start-up stays torch-free); the imports are
# plain statements, so the import contract (tests/unit/test_architecture.py) sees them.
def _explain():
    from llmpipe.tools import explain
    return explain.setup, explain.run


def _import_lf():
    from llmpipe.tools import import_lf
    return import_lf.setup, import_lf.run


def _ls():
    from llmpipe.tools import recipes
    return recipes.setup_ls, recipes.run_ls


def _plan():
    from llmpipe.tools import plan
    return plan.setup, plan.run


def _lock():
    from llmpipe.tools import lockdiff
    return lockdiff.setup, lockdiff.run


def _export():
    from llmpipe.tools import export_cmd
    return export_cmd.setup, export_cmd.run


def _docs():
    return setup_docs, run_docs


def _chat():
    from llmpipe import chat
    return chat.setup, chat.run


def _serve():
    from llmpipe import serve
    return serve.setup, serve.run


def _ui():
    from llmpipe.tools.ui import cli as ui_cli
    return ui_cli.setup, ui_cli.run


def _templates():
    from llmpipe.tools import templates_cmd
    return templates_cmd.setup, templates_cmd.run


COMMANDS: dict[str, Command] = {
    "explain": Command("where a seed flag or config path lives, its type, default, range and meaning", _explain,
                       names_only=True),
    "import-llamafactory": Command("turn a flat LLaMA-Factory YAML into an llmpipe recipe", _import_lf),
    "ls": Command("list the recipes of every recipe source on the search path (duplicates flagged)", _ls),
    "plan": Command("the stage graph of a configuration: fingerprints, run or cached (no torch)", _plan),
    "lock": Command("show a job's lock file, or why stages differ between two jobs", _lock),
    "export": Command("export LoRA adapters or a model without training (merge, GPTQ, push)", _export),
    "docs": Command("print docs/parameters.md (generated from the schema), or --write it", _docs),
    "chat": Command("talk to the recipe's trained model (or the base model) in the terminal", _chat),
    "serve": Command("serve the recipe's trained model over an OpenAI-compatible HTTP API", _serve),
    "ui": Command("a local web page: runs and their stage graphs, sweeps, run diffs, a recipe composer", _ui),
    "templates": Command("the named chat templates (LLaMA-Factory's names): family, stop words, thinking, tool "
                         "format", _templates),
}


def register(name: str, help: str, setup: Callable, run: Callable) -> None:
    """Add (or replace) a subcommand: ``register("plan", "show the stage plan", setup, run)``."""
    COMMANDS[name] = Command(help, lambda: (setup, run))


def _protect_names(argv: list[str], chosen: str | None) -> list[str]:
    """``explain --no_use_cache``: pass flag-like names through as positionals (insert ``--``)."""
    if chosen is None or not COMMANDS[chosen].names_only:
        return argv
    i = argv.index(chosen)
    rest = argv[i + 1:]
    if "--" in rest or any(a in ("-h", "--help") for a in rest):
        return argv
    return argv[:i + 1] + ["--"] + rest


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmpipe-tools",
        description="llmpipe's tools (the pipeline itself runs with `python -m llmpipe`; see --help there).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        sp = sub.add_parser(name, help=cmd.help, description=cmd.help)
        if only is None or name == only:
            setup, _ = cmd.load()
            setup(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    chosen = chosen if chosen in COMMANDS else None
    parser = build_parser(only=chosen)
    args = parser.parse_args(_protect_names(argv, chosen))
    if not args.command:
        parser.print_help()
        return 2
    _, run = COMMANDS[args.command].load()
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `llmpipe-tools ls | head`
        return 0


# ------------------------------------------------------------------------------------------- docs
def docs_path() -> Path:
    """docs/parameters.md of the source checkout llmpipe runs from, else ./docs/parameters.md."""
    import llmpipe

    root = Path(llmpipe.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "docs").is_dir():
        return root / "docs" / "parameters.md"
    return Path.cwd() / "docs" / "parameters.md"


def setup_docs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--write", action="store_true", help="write docs/parameters.md instead of printing it")
    p.add_argument("-o", "--output", type=Path, default=None, help="file to write (default: docs/parameters.md)")


def run_docs(args: argparse.Namespace) -> int:
    from llmpipe.tools.paramdoc import render_markdown

    text = render_markdown()
    if not (args.write or args.output):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    out = args.output or docs_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.read_text(encoding="utf-8") if out.is_file() else None
    if old == text:
        print(f"{out}: up to date")
        return 0
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
