"""Supervised prompt/response spans of a conversation, as LLaMA-Factory forms them for its templates.

``sft_spans`` cuts a conversation into (prompt, response) text pairs, one per assistant (or tool-call)
turn: the prompt holds everything since the previous answer (prefix, system, user or tool-result
turns), the response is the answer's slot. Reasoning templates add or remove thought blocks:

* ``enable_thinking`` true: a thought block in an answer is kept and trained; an answer without one
  gets the empty thought in front of it, trained too;
* false: every thought block is removed and the empty thought goes at the end of the prompt (not
  trained);
* null (follow the data): thought blocks are kept; an answer without one gets the empty thought in
  the prompt;
* ``mask_history`` without ``preserve_thinking``: earlier answers lose their thought blocks and only
  the last answer is considered for the empty thought.

``efficient_eos`` templates have no EOS in their answers: the processor appends one EOS at the end and
makes the first prompt token after each earlier answer predict EOS (llmpipe.data.processors).
"""
from __future__ import annotations

from llmpipe.data.templates.spec import TemplateSpec, fill, first_element

ANSWER_ROLES = ("assistant", "function")


def has_thought(spec: TemplateSpec, content: str) -> bool:
    """Whether ``content`` holds a thought block (either tag, without surrounding whitespace)."""
    op, cl = (w.strip() for w in spec.thought_words)
    return op in content or cl in content


def strip_thought(spec: TemplateSpec, content: str) -> str:
    """``content`` without its open...close thought blocks (exact tags, shortest match), then without
    leading newlines."""
    op, cl = spec.thought_words
    out, rest = [], content
    while True:
        i = rest.find(op)
        j = rest.find(cl, i + len(op)) if i >= 0 else -1
        if j < 0:
            break
        out.append(rest[:i])
        rest = rest[j + len(cl):]
    return ("".join(out) + rest).lstrip("\n")


def _slot_of(spec: TemplateSpec, role: str) -> str:
    return {"user": spec.user, "tool": spec.observation_slot, "observation": spec.observation_slot,
            "assistant": spec.assistant_slot, "function": spec.function_slot}.get(role, spec.user)


def sft_spans(spec: TemplateSpec, messages: list[dict], *, bos: str = "", eos: str = "",
              enable_thinking: bool | None = True, mask_history: bool = False,
              preserve_thinking: bool = False) -> list[tuple[str, str]]:
    """(prompt, response) texts per answer; ``bos`` / ``eos`` are the tokenizer's token strings."""
    system = None
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    system = system or spec.default_system
    eos_text = spec.eos_text if spec.eos_text is not None else eos
    contents = [m["content"] for m in messages]
    answers = [i for i, m in enumerate(messages) if m["role"] in ANSWER_ROLES]
    history_only = mask_history and not preserve_thinking
    if spec.reasoning:
        for i in answers:
            if enable_thinking is False or (history_only and i != answers[-1]):
                contents[i] = strip_thought(spec, contents[i])
    pairs: list[tuple[str, str]] = []
    prompt = []
    for i, m in enumerate(messages):
        c = contents[i]
        if i == 0:
            prompt.append(fill(spec.prefix, "", bos, eos_text))
            if system and spec.system_in_first_user and m["role"] == "user":
                c = fill(first_element(spec.system), system, bos, eos_text) + c
            elif system and not spec.system_in_first_user:
                prompt.append(fill(spec.system, system, bos, eos_text))
        text = fill(_slot_of(spec, m["role"]), c, bos, eos_text)
        if m["role"] not in ANSWER_ROLES:
            prompt.append(text)
            continue
        if spec.reasoning and not (history_only and i != answers[-1]) and not has_thought(spec, c):
            if enable_thinking is True:
                text = spec.empty_thought + text
            else:
                prompt.append(spec.empty_thought)
        pairs.append(("".join(prompt), text))
        prompt = []
    return pairs
