"""What every backend shares: the prompt side (chat template + ``data.default_system`` -> token ids, the
end-of-turn token ids), the result of one generation, a text stream, and the :class:`Stream` protocol (llmpipe.infer.backends opens a backend).

Prompts are rendered here, by llmpipe, for every backend: the Hugging Face and vLLM engines receive the same
token ids, rendered exactly as the training data was (``llmpipe.data.processors.chat_messages``).
"""
from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any, Iterator

from llmpipe.errors import UserError


class InferenceError(UserError):
    """A model cannot be served or generation failed; the message says why (printed without a traceback)."""


@dataclass
class Completion:
    text: str
    finish_reason: str          # "stop" (end of turn or a stop string) or "length" (token limit)
    prompt_tokens: int
    completion_tokens: int


# the call formats of the model families' own templates, tried in this order on an answer (tags first, bare JSON
# last) when the tokenizer's own template wrote the tools: Qwen/Hermes tags, Mistral, Llama 3.1 JSON, ReAct text
NATIVE_CALL_FORMATS = ("qwen", "qwen3_5", "mistral", "llama3", "default")


class Prompter:
    """Renders conversations as the training data is rendered: the run's chat template (checked against the
    tokenizer), ``data.default_system`` (or the template's), tools in ``data.tool_format``."""

    def __init__(self, tokenizer, obj: Any):
        from dataclasses import replace

        from llmpipe.data.loader import prepare_tokenizer
        from llmpipe.data.options import DataOptions
        from llmpipe.data.templates import stop_strings

        opts = replace(DataOptions.from_cfg(obj), stage="sft")   # conversations, whatever the run trained
        self.proc = prepare_tokenizer(tokenizer, opts)
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # every stop word of the template ends generation (llama3: <|eot_id|> and <|eom_id|>): as a token id when
        # it is one token in this tokenizer, else as a stop string (cut from the text, finish_reason "stop")
        ids, texts = [tokenizer.eos_token_id], []
        for stop in stop_strings(tokenizer, opts.template):
            enc = tokenizer.encode(stop, add_special_tokens=False)
            if len(enc) == 1:
                ids.append(enc[0])
            elif stop:
                texts.append(stop)
        self.eos_ids = [i for i in dict.fromkeys(ids) if i is not None]
        self.stop_texts: tuple[str, ...] = tuple(dict.fromkeys(texts))
        self.template_opts: dict = {}   # the tokenizer's own template: data.enable_thinking etc. where it reads them
        if opts.template is None:
            from llmpipe.data.native_template import template_options

            self.template_opts = template_options(tokenizer, opts.enable_thinking, opts.preserve_thinking)

    def with_stops(self, params):
        """``params`` with the template's stop words that are several tokens here added to its stop strings."""
        extra = tuple(t for t in self.stop_texts if t not in params.stop)
        return params.with_request(stop=params.stop + extra) if extra else params

    @property
    def native_tools(self) -> bool:
        """data.template and data.tool_format null: the tokenizer's own template writes tools and calls."""
        return self.proc.get("native") == "tools"

    def chat(self, messages: list[dict], system: str | None = None, tools: str | None = None):
        """(messages, tools) for ``apply_chat_template``: tools and calls as text in data.tool_format, or
        handed to the tokenizer's own template (``tools``, ``tool_calls``, role ``tool``)."""
        from llmpipe.data.native_template import native_messages
        from llmpipe.data.processors import chat_messages

        ex = {"messages": messages, "system": system, "tools": tools}
        if self.native_tools:
            return native_messages(ex, self.proc.get("default_system"))
        return chat_messages(ex, self.proc.get("default_system"), self.proc.get("tool_format", "default"),
                             self.proc.get("template")), None

    def messages(self, messages: list[dict], system: str | None = None, tools: str | None = None) -> list[dict]:
        return self.chat(messages, system, tools)[0]

    def render(self, messages: list[dict], system: str | None = None, tools: str | None = None) -> str:
        msgs, native = self.chat(messages, system, tools)
        kw = dict(tokenize=False, add_generation_prompt=True, **self.template_opts)
        text = self.tokenizer.apply_chat_template(msgs, tools=native, **kw)
        if native and text == self.tokenizer.apply_chat_template(msgs, **kw):
            raise ValueError("the model's own chat template does not write tool definitions (they would be "
                             "dropped); set data.tool_format (or data.template) to pass tools to this model")
        return text

    def parse_calls(self, text: str) -> tuple[str | None, list[dict]] | None:
        """(content, calls) when answer ``text`` calls tools, in the format the prompt was written in (with
        the tokenizer's own template: the first of the common formats that reads it), else None."""
        from llmpipe.data.tools import parse_calls

        formats = NATIVE_CALL_FORMATS if self.native_tools else (self.proc.get("tool_format", "default"),)
        for fmt in formats:
            found = parse_calls(text, fmt)
            if found:
                return found
        return None

    def encode(self, messages: list[dict], system: str | None = None, tools: str | None = None) -> list[int]:
        return list(self.tokenizer(self.render(messages, system, tools), add_special_tokens=False)["input_ids"])


def load_prompter(tokenizer_source: str, obj: Any) -> Prompter:
    from llmpipe.models.loading import load_tokenizer

    return Prompter(load_tokenizer(tokenizer_source, obj.model), obj)


class StopScanner:
    """Cuts streamed text at the first stop string, holding back text that may be the start of one."""

    def __init__(self, stops: tuple[str, ...] | list[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.text, self.sent, self.stopped = "", 0, False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.text += piece
        cut = min((i for i in (self.text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self.sent = self.text[self.sent:cut], cut
            return out
        end = max(self.sent, len(self.text) - self.hold)
        out, self.sent = self.text[self.sent:end], end
        return out

    def flush(self) -> str:
        if self.stopped:
            return ""
        out, self.sent = self.text[self.sent:], len(self.text)
        return out


def cut_at_stop(text: str, stops) -> tuple[str, bool]:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[:min(hits)], True) if hits else (text, False)


class Stream:
    """Text pieces of one generation as they come; ``result`` (a Completion) once iteration has ended.

    Producers call :meth:`push` with text pieces and :meth:`finish` (or :meth:`fail`) once, from any thread.
    """

    _END = object()

    def __init__(self, on_close=None):
        self._q: queue.Queue = queue.Queue()
        self.result: Completion | None = None
        self._error: BaseException | None = None
        self._on_close = on_close

    def push(self, piece: str) -> None:
        if piece:
            self._q.put(piece)

    def finish(self, completion: Completion) -> None:
        self.result = completion
        self._q.put(self._END)

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._q.put(self._END)

    def __iter__(self) -> Iterator[str]:
        while True:
            item = self._q.get()
            if item is self._END:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def close(self) -> None:
        """The consumer gives up (e.g. the client disconnected): stop generating where the backend can."""
        if self._on_close is not None:
            self._on_close()
