"""``python -m llmpipe.chat [overrides]`` (also ``llmpipe-tools chat``): talk to a model in the terminal.

Takes the same Hydra overrides as ``python -m llmpipe``; talks to the recipe's trained result from the store
(else the base model, and says which), streams the answer token by token, keeps the conversation, applies the
chat template and ``data.default_system``. Commands: ``/clear`` forgets the conversation, ``/exit`` (or
Ctrl-D) quits; Ctrl-C stops an answer.
"""
from __future__ import annotations

import sys

from llmpipe.interactive import Program

PROG = "llmpipe.chat"
HELP = "/clear forgets the conversation, /exit (or Ctrl-D) quits, Ctrl-C stops an answer"


def _say(text: str) -> None:
    print(f"{PROG}: {text}", flush=True)


def answer(session, history: list[dict], params, out=None) -> str | None:
    """Stream one answer to ``history`` (ending with the user's turn); None when it could not be made.
    ``out``: where the answer goes (the current sys.stdout by default, looked up at call time)."""
    out = out if out is not None else sys.stdout
    from llmpipe.infer.engine import InferenceError
    from llmpipe.infer.generation import PromptTooLong

    try:
        stream = session.backend.stream(session.prompter.encode(history), params)
    except PromptTooLong as e:
        _say(f"{e}; /clear starts a new conversation")
        return None
    pieces = []
    out.write("Assistant: ")
    out.flush()
    try:
        for piece in stream:
            pieces.append(piece)
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        stream.close()
        out.write(" [stopped]\n")
        out.flush()
        return None
    except InferenceError as e:
        out.write("\n")
        _say(str(e))
        return None
    out.write("\n")
    out.flush()
    return "".join(pieces)


def repl(session, params, read=input) -> int:
    history: list[dict] = []
    while True:
        try:
            line = read("User: ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print()
            _say("(use /exit or Ctrl-D to quit)")
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/clear":
            history.clear()
            _say("conversation cleared")
            continue
        if text.startswith("/"):
            _say(f"unknown command {text.split()[0]}; {HELP}")
            continue
        history.append({"role": "user", "content": line})
        reply = answer(session, history, params)
        if reply is None:
            history.pop()
        else:
            history.append({"role": "assistant", "content": reply})


def main(argv: list[str] | None = None) -> int:
    from llmpipe.infer.generation import from_config
    from llmpipe.interactive import open_session

    argv = list(sys.argv[1:] if argv is None else argv)
    session = open_session(argv, PROG)
    _say(f"model: {session.ref.describe()}")
    _say(f"chose {session.note}")
    _say(f"backend {session.backend.name}; {HELP}")
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:  # pragma: no cover
            pass
    try:
        return repl(session, from_config(session.obj))
    finally:
        session.backend.close()


# python -m llmpipe.chat, and llmpipe-tools chat (tools/cli.py COMMANDS)
PROGRAM = Program(main, PROG)
main_clean, setup, run, cli = PROGRAM.main_clean, PROGRAM.setup, PROGRAM.run, PROGRAM.cli


if __name__ == "__main__":
    cli()
