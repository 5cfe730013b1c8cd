"""Tool calls in ``llmpipe.chat``: ``/tools FILE`` gives the model function definitions (written into the
prompt in the run's tool format), an answer that calls them is shown as the calls and kept as a call turn,
``/result TEXT`` answers them and the model goes on. The prompter is the real one (builtin:tiny's
tokenizer, the qwen template and its qwen tool format); the generator is a stand-in that answers a call, then text."""
from __future__ import annotations

import json
from types import SimpleNamespace

from serve_support import compose_serve

from llmpipe.infer.engine import Completion, Stream

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


class Scripted:
    """A backend that answers the scripted texts in turn and keeps the prompts it was given (decoded)."""
    name = "scripted"

    def __init__(self, tok, answers):
        self.tok, self.answers, self.prompts = tok, list(answers), []

    def stream(self, prompt, params):
        self.prompts.append(self.tok.decode(prompt))
        text = self.answers.pop(0)
        s = Stream()
        s.push(text)
        s.finish(Completion(text, "stop", len(prompt), 1))
        return s


def test_tools_calls_and_results_in_chat(tmp_path, capsys):
    from llmpipe.chat import repl
    from llmpipe.infer.engine import Prompter
    from llmpipe.models.tiny import build_tokenizer

    tok = build_tokenizer("builtin:tiny")
    prompter = Prompter(tok, compose_serve(["data.template=qwen"]))
    backend = Scripted(tok, [CALL, "It is 20 degrees.", "plain"])
    (tmp_path / "tools.json").write_text(json.dumps([TOOL]))
    lines = iter(["/result too early", f"/tools {tmp_path / 'nope.json'}", f"/tools {tmp_path / 'tools.json'}",
                  "Weather in Paris?", "/result 20 degrees", "/tools off", "thanks", "/exit"])
    assert repl(SimpleNamespace(prompter=prompter, backend=backend), None, read=lambda p: next(lines)) == 0
    out = capsys.readouterr().out
    assert "no tool call to answer" in out and "nope.json" in out and "tools: get_weather" in out
    assert 'tool call: get_weather {"city": "Paris"}' in out and "answer it with /result TEXT" in out
    first, second, third = backend.prompts
    assert "# Tools" in first and json.dumps(TOOL) in first and first.endswith("<|im_start|>assistant\n")
    assert ("<|im_start|>assistant\n" + CALL + "<|im_end|>\n<|im_start|>user\n<tool_response>\n20 degrees\n"
            "</tool_response><|im_end|>\n<|im_start|>assistant\n") in second
    assert "# Tools" not in third and third.endswith("It is 20 degrees.<|im_end|>\n<|im_start|>user\nthanks<|im_end|>\n"
                                                   "<|im_start|>assistant\n")
