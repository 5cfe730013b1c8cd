"""A server in this process with a stand-in backend (no model): for the tests of HTTP plumbing (limits,
timeouts, fuzzing). ``stub_server(overrides)`` composes the config with ``serve.*`` overrides and serves on
127.0.0.1 (any free port) in a thread; the backend answers at once, or waits for ``backend.release``."""
from __future__ import annotations

import contextlib
import threading
import time
from types import SimpleNamespace


class StandIn:
    """Backend and prompter: "hello" at once; with ``hold`` set, every generation waits for ``release``.
    ``answer``: the text it generates instead; ``prompter``: a real Prompter that renders the prompts (kept
    in ``prompts``) and reads tool calls from the answer."""
    name, engine_limit = "stand-in", None

    def __init__(self, hold: bool = False, answer: str = "hello", prompter=None):
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.started = threading.Semaphore(0)
        self.answer, self.prompter, self.prompts = answer, prompter, []

    def encode(self, messages, system=None, tools=None):
        if self.prompter is not None:
            self.prompts.append(self.prompter.render(messages, system, tools))
        return [1, 2]

    def parse_calls(self, text):
        return self.prompter.parse_calls(text)

    def generate(self, prompts, params, batch_size=8):
        from llmpipe.infer.engine import Completion

        self.started.release()
        self.release.wait(60)
        return [Completion(self.answer, "stop", 2, 1) for _ in prompts]

    def stream(self, prompt, params):
        from llmpipe.infer.engine import Completion, Stream

        stream = Stream()

        def work():
            self.started.release()
            self.release.wait(60)
            half = len(self.answer) // 2
            for piece in (self.answer[:half], self.answer[half:]):
                stream.push(piece)
            stream.finish(Completion(self.answer, "stop", 2, 2))

        threading.Thread(target=work, daemon=True).start()
        return stream

    def close(self):
        pass


def compose_serve(overrides=()):
    from llmpipe.config.compose import compose
    from llmpipe.pipeline.preflight import validate

    return validate(compose(["model=tiny", "data.dataset=demo_sft", "serve.model_name=standin", *overrides]))[0].obj


@contextlib.contextmanager
def stub_server(overrides=(), *, hold: bool = False, api_key: str | None = None, obj=None, answer: str = "hello",
                prompter=None):
    from llmpipe.serve import App, make_server

    fake = StandIn(hold, answer, prompter)
    lines: list[str] = []
    app = App(SimpleNamespace(obj=obj or compose_serve(overrides), recipe=None, backend=fake, prompter=fake),
              api_key=api_key, log=lines.append)
    server = make_server(app, "127.0.0.1", 0).start()
    try:
        yield SimpleNamespace(app=app, backend=fake, server=server, port=server.address[1], log=lines,
                              url=f"http://127.0.0.1:{server.address[1]}")
    finally:
        fake.release.set()
        server.close()


def wait_for(check, seconds: float = 10) -> bool:
    """Poll ``check`` until it is true (the server finishes a request just after the client has its answer)."""
    end = time.time() + seconds
    while time.time() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def post_chat(url: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
    """(status, JSON body) of a chat-completions request to the server at ``url``; 4xx/5xx answers too."""
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
