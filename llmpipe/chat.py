"""``python -m llmpipe.chat [overrides]`` (also ``llmpipe-tools chat``): talk to a model in the terminal.

Takes the same Hydra overrides as ``python -m llmpipe``; talks to the recipe's trained result from the store
(else the base model, and says which), streams the answer token by token, keeps the conversation, applies the
chat template and ``data.default_system``. Commands: ``/clear`` forgets the conversation, ``/exit`` (or
Ctrl-D) quits; Ctrl-C stops an answer. Tools: ``/tools FILE`` gives the model the function definitions in a
JSON file (``/tools off`` takes them away); an answer that calls them is shown as the calls, read in the
run's tool format, and ``/result TEXT`` answers the calls with a tool result, after which the model goes on.
Images (a vision-language model): ``/image PATH`` attaches the image file PATH to your next message (several
``/image`` lines attach several, in order); the images stay in the conversation until ``/clear``.
"""
from __future__ import annotations

import sys

from llmpipe.interactive import Program

PROG = "llmpipe.chat"
HELP = ("/clear forgets the conversation, /exit (or Ctrl-D) quits, Ctrl-C stops an answer, /tools FILE gives "
        "the model tools (/tools off), /result TEXT answers its tool calls, /image PATH attaches an image to your "
        "next message")


def _say(text: str) -> None:
    print(f"{PROG}: {text}", flush=True)


def answer(session, history: list[dict], params, out=None, tools: str | None = None, images=()) -> str | None:
    """Stream one answer to ``history`` (ending with the user's turn or a tool result); None when it could
    not be made. ``out``: where the answer goes (the current sys.stdout by default, looked up at call time);
    ``tools``: function definitions (canonical JSON) the model is given; ``images``: the conversation's images,
    one per ``<image>`` in it, in order (a vision-language model)."""
    out = out if out is not None else sys.stdout
    from llmpipe.infer.engine import InferenceError
    from llmpipe.infer.generation import PromptTooLong

    try:
        vision = getattr(session, "vision", None)
        if vision is not None:
            prompt = vision.encode(session.prompter, history, None, tools, list(images))
        else:
            prompt = session.prompter.encode(history, None, tools) if tools else session.prompter.encode(history)
        stream = session.backend.stream(prompt, params)
    except PromptTooLong as e:
        _say(f"{e}; /clear starts a new conversation")
        return None
    except ValueError as e:   # e.g. tools the model's own template cannot write
        _say(str(e))
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


def load_tools(arg: str) -> str | None:
    """Canonical tools JSON from the file ``arg`` (a JSON list of function definitions, bare or OpenAI's)."""
    from pathlib import Path

    from llmpipe.data.tools import ToolDataError, parse_tools

    try:
        return parse_tools(Path(arg).expanduser().read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ToolDataError) as e:
        raise ValueError(f"/tools {arg}: {e}") from None


def record(session, history: list[dict], reply: str, tools: str | None) -> None:
    """Append the answer: as tool calls (and say so) when it calls the given tools, else as text."""
    import json

    from llmpipe.data.tools import canonical_call

    found = session.prompter.parse_calls(reply) if tools else None
    if not found:
        history.append({"role": "assistant", "content": reply})
        return
    text, calls = found
    for c in calls:
        _say(f"tool call: {c['name']} {json.dumps(c['arguments'], ensure_ascii=False)}")
    _say("answer it with /result TEXT")
    history.append({"role": "function_call", "content": canonical_call(calls, text)})


def attach(arg: str, state: dict) -> None:
    """``/image PATH``: open the image and hold it for the next user message."""
    from llmpipe.data.media import MediaError
    from llmpipe.data.mm_media import open_image

    if state.get("vision") is None:
        _say(f"/image: {state.get('text_only') or 'the model is text-only'}")
        return
    if not arg:
        _say("usage: /image PATH (an image file, attached to your next message)")
        return
    try:
        state["pending"].append(open_image(arg.strip(), "."))
    except MediaError as e:
        _say(f"/image: {e}")
        return
    img = state["pending"][-1]
    _say(f"image {img.size[0]}x{img.size[1]} attached to your next message ({len(state['pending'])} waiting)")


def _command(text: str, history: list[dict], state: dict) -> str | None:
    """Handle a /command; the tool result to send on (``/result``), else None."""
    if text == "/clear":
        history.clear()
        state["images"], state["pending"] = [], []
        _say("conversation cleared")
    elif text.split()[0] == "/image":
        attach(text[len("/image"):].strip(), state)
    elif text.split()[0] == "/tools":
        arg = text[len("/tools"):].strip()
        if arg in ("", "off"):
            state["tools"] = None
            _say("no tools" if arg else "usage: /tools FILE (a JSON list of function definitions), /tools off")
            return None
        try:
            state["tools"] = load_tools(arg)
        except ValueError as e:
            _say(str(e))
            return None
        import json

        _say("tools: " + ", ".join(t["name"] for t in json.loads(state["tools"] or "[]")))
    elif text.split()[0] == "/result":
        if not history or history[-1]["role"] != "function_call":
            _say("no tool call to answer")
            return None
        return text[len("/result"):].strip()
    else:
        _say(f"unknown command {text.split()[0]}; {HELP}")
    return None


def repl(session, params, read=input) -> int:
    from llmpipe.infer.mm_request import PLACEHOLDER, text_only

    history: list[dict] = []
    vision = getattr(session, "vision", None)
    # images: those of the conversation, in order; pending: attached by /image to the next message
    state: dict = {"tools": None, "vision": vision, "images": [], "pending": [],
                   "text_only": text_only(session.ref) if vision is None and hasattr(session, "ref") else None}
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
        if text.startswith("/"):
            result = _command(text, history, state)
            if result is None:
                continue
            history.append({"role": "tool", "content": result})
            added = []
        else:
            added = state["pending"]
            state["images"], state["pending"] = state["images"] + added, []
            history.append({"role": "user", "content": PLACEHOLDER * len(added) + line})
        reply = answer(session, history, params, tools=state["tools"], images=state["images"])
        if reply is None:
            history.pop()
            if added:   # the message's images wait for the next one again
                state["images"], state["pending"] = state["images"][:-len(added)], added
        else:
            record(session, history, reply, state["tools"])


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
