"""The data a chat template is made of (LLaMA-Factory's model of a template, as facts).

A template is a set of *slots*, one per role: strings in which ``{{content}}`` stands for the message
text, ``{{bos}}`` / ``{{eos}}`` for the tokenizer's BOS / EOS token (or, for ``replace_eos`` templates,
the first stop word in place of EOS). Everything else in a slot is literal text. From these slots
llmpipe generates the Jinja put on the tokenizer (llmpipe.data.templates.jinja) and the prompt/response
spans of supervised training (llmpipe.data.templates.spans). No torch, no transformers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

CONTENT, BOS, EOS = "{{content}}", "{{bos}}", "{{eos}}"
_MARK = re.compile(r"(\{\{content\}\}|\{\{bos\}\}|\{\{eos\}\})")
# control strings written like special tokens: <|...|>, <｜...｜>, <...> words with an underscore or a bar
_TOKENISH = re.compile(r"<[|｜][^<>\s]{1,40}?[|｜]>|<(?:start|end)_of_turn>")


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    family: str
    system: str = CONTENT
    user: str = CONTENT
    assistant: str | None = None       # None: "{{content}}{{eos}}" ("{{content}}" with efficient_eos)
    observation: str | None = None     # None: the user slot
    function: str | None = None        # None: the assistant slot
    prefix: str = ""
    default_system: str | None = None
    stop_words: tuple[str, ...] = ()
    replace_eos: bool = False           # the first stop word ends every answer instead of the tokenizer's EOS
    efficient_eos: bool = False         # no EOS in answers; one EOS after the last turn (labels: see spans)
    thought_words: tuple[str, str] | None = None  # (open, close) of a reasoning template's thought block
    empty_thought_close_only: bool = False         # GLM-4.7-style: the empty thought is the closing tag alone
    system_in_first_user: bool = False  # Llama-2-style: the system text goes inside the first user turn
    tools_lstrip_without_system: bool = False      # tool text with no system prompt loses its leading newlines
    tool_format: str | None = "default"  # LLaMA-Factory's default tool format (None: its own, unnamed)
    mm_plugin: str = "base"             # how media placeholders expand (llmpipe's multimodal code)
    tokens: tuple[str, ...] = ()        # strings that must be looked up as single tokens
    replaces_own_template: bool = False  # LF writes this template over the tokenizer's own one
    jinja_override: str | None = None   # a frozen Jinja text (see catalog: the built-in models embed it)
    extra_markers: tuple[str, ...] = field(default=())

    # -- resolved slots -------------------------------------------------------------------------
    @property
    def assistant_slot(self) -> str:
        if self.assistant is not None:
            return self.assistant
        return CONTENT if self.efficient_eos else CONTENT + EOS

    @property
    def observation_slot(self) -> str:
        return self.user if self.observation is None else self.observation

    @property
    def function_slot(self) -> str:
        return self.assistant_slot if self.function is None else self.function

    @property
    def reasoning(self) -> bool:
        return self.thought_words is not None

    @property
    def empty_thought(self) -> str:
        if not self.thought_words:
            return ""
        return self.thought_words[1] if self.empty_thought_close_only else "".join(self.thought_words)

    @property
    def eos_text(self) -> str | None:
        """The literal text of ``{{eos}}`` (None: the tokenizer's own EOS token)."""
        return self.stop_words[0] if self.replace_eos and self.stop_words else None

    def slots(self) -> tuple[str, ...]:
        return (self.prefix, self.system, self.user, self.assistant_slot, self.observation_slot, self.function_slot)

    @property
    def needs_eos(self) -> bool:
        """Whether the tokenizer's own EOS token appears in the rendered text."""
        return self.efficient_eos or (self.eos_text is None and any(EOS in s for s in self.slots()))

    @property
    def markers(self) -> tuple[str, ...]:
        """Control strings that must be single tokens of the tokenizer: the end of turn that replaces EOS,
        looked-up tokens and the special-token-like strings of the slots. (Other stop words only stop
        generation; LLaMA-Factory adds them to the vocabulary when missing, llmpipe stops on their text.)"""
        found = ([self.eos_text] if self.eos_text else []) + list(self.tokens) + list(self.extra_markers)
        for s in self.slots():
            found += _TOKENISH.findall(s)
        return tuple(dict.fromkeys(m for m in found if m))

    @property
    def stop(self) -> str | None:
        """The string that ends an assistant turn (None: the tokenizer's EOS)."""
        return self.eos_text


def fill(slot: str, content: str, bos: str, eos: str) -> str:
    """The text of ``slot`` with ``content`` and the BOS / EOS strings put in."""
    out = []
    for part in _MARK.split(slot):
        out.append(content if part == CONTENT else bos if part == BOS else eos if part == EOS else part)
    return "".join(out)


def first_element(slot: str) -> str:
    """The slot's text up to its first BOS/EOS marker (what Llama-2-style templates keep of the system slot)."""
    return re.split(r"\{\{bos\}\}|\{\{eos\}\}", slot, maxsplit=1)[0]


def split_slot(slot: str) -> list[str]:
    """The slot cut at its markers: literal text and the markers themselves, in order."""
    return [p for p in _MARK.split(slot) if p]
