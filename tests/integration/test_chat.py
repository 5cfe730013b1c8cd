"""``python -m llmpipe.chat`` in a pseudo-terminal against the exported model of the shared quick run (found
in the store from the same overrides), plus the conversation loop with a recording backend (history,
/clear, an answer that does not fit), the chat template and default system message, and clean errors."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from llmpipe.infer.engine import Completion, Stream


class Terminal:
    """A child process on a pseudo-terminal: ``expect`` reads until a pattern shows, ``send`` types a line."""

    def __init__(self, args: list[str], cwd, env):
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.fd, self.seen = master, ""

    def expect(self, pattern: str, timeout: float = 300) -> re.Match:
        end = time.time() + timeout
        while True:
            found = re.search(pattern, self.seen)
            if found:
                self.seen = self.seen[found.end():]
                return found
            left = end - time.time()
            if left <= 0 or self.proc.poll() is not None and not select.select([self.fd], [], [], 0)[0]:
                raise AssertionError(f"{pattern!r} did not show; the terminal shows:\n{self.seen[-3000:]}")
            if select.select([self.fd], [], [], min(left, 1.0))[0]:
                try:
                    self.seen += os.read(self.fd, 4096).decode("utf-8", "replace")
                except OSError:   # the child closed the terminal
                    pass

    def send(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.fd)


@pytest.mark.slow
def test_chat_in_a_terminal(tmp_path_factory):
    from test_predict import env_for, quick, trained_store

    root = trained_store(tmp_path_factory)
    term = Terminal([sys.executable, "-m", "llmpipe.chat", *quick(root)], root, env_for(root))
    try:
        intro = term.expect(r"User: ").string
        assert "chose the configuration's trained result from the store" in intro
        assert f"exported (export): {root / 'export'}" in intro
        term.send("What is the colour of the zappet?")
        answer = term.expect(r"Assistant: ([^\r\n]*)\r?\n").group(1)
        term.expect(r"User: ")
        term.send("What is the colour of the zappet?")   # the same question with history: still answered
        term.expect(r"Assistant: .*\r?\n")
        term.expect(r"User: ")
        term.send("/clear")
        term.expect(r"conversation cleared")
        term.expect(r"User: ")
        term.send("What is the colour of the zappet?")   # greedy, fresh conversation: the first answer again
        assert term.expect(r"Assistant: ([^\r\n]*)\r?\n").group(1) == answer
        term.expect(r"User: ")
        term.send("/exit")
        assert term.proc.wait(60) == 0
    finally:
        term.close()


@pytest.mark.slow
def test_chat_renders_the_template_and_default_system(tmp_path_factory):
    from llmpipe.pipeline.preflight import validate
    from llmpipe.infer.engine import load_prompter
    from llmpipe.config.compose import compose
    from test_predict import quick, trained_store

    root = trained_store(tmp_path_factory)
    for extra, system in (([], "You are a helpful assistant."), (["data.default_system='Answer in one word.'"],
                                                                  "Answer in one word.")):
        obj = validate(compose(quick(root) + extra))[0].obj
        text = load_prompter(str(root / "export"), obj).render([{"role": "user", "content": "hi"}])
        assert text == f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_a_path_that_is_not_a_model_is_a_clear_error(tmp_path):
    (tmp_path / "notamodel").mkdir()
    proc = subprocess.run([sys.executable, "-m", "llmpipe.chat", f"model.name_or_path={tmp_path / 'notamodel'}",
                           "data.dataset=demo_sft"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode in (1, 2), proc.stderr
    assert "config.json" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------ the loop, with a recording backend
class Recorder:
    def __init__(self, fail_on: str | None = None):
        self.prompts: list[list[dict]] = []
        self.fail_on = fail_on
        self.name = "recorder"

    def encode(self, history):
        from llmpipe.infer.generation import PromptTooLong

        if self.fail_on and history[-1]["content"] == self.fail_on:
            raise PromptTooLong("the prompt is 9999 tokens and generate.max_length is 1024")
        self.prompts.append([dict(m) for m in history])
        return [1, 2, 3]

    def stream(self, prompt, params):
        s = Stream()
        n = len(self.prompts)
        for piece in ("answer ", str(n)):
            s.push(piece)
        s.finish(Completion(f"answer {n}", "stop", 3, 2))
        return s


def test_history_clear_and_a_prompt_too_long(capsys):
    from llmpipe.chat import repl

    rec = Recorder(fail_on="way too long")
    lines = iter(["hello", "again", "way too long", "/clear", "fresh", "/nope", "/exit", "never read"])
    session = SimpleNamespace(prompter=rec, backend=rec)
    assert repl(session, params=None, read=lambda prompt: next(lines)) == 0
    u = lambda t: {"role": "user", "content": t}          # noqa: E731
    a = lambda t: {"role": "assistant", "content": t}     # noqa: E731
    assert rec.prompts == [[u("hello")], [u("hello"), a("answer 1"), u("again")], [u("fresh")]]
    out = capsys.readouterr().out
    assert "Assistant: answer 1\n" in out and "Assistant: answer 2\n" in out
    assert "max_length is 1024; /clear starts a new conversation" in out
    assert "conversation cleared" in out and "unknown command /nope" in out
