"""The Jinja text of a template, generated from its slots (llmpipe.data.templates.spec).

What the generated Jinja does, for ``tokenizer.apply_chat_template`` (inference, serving, TRL's
preference trainers, the tokenizer saved with a model):

* the prefix, then the system slot (or, Llama-2-style, the system text inside the first user turn);
  a conversation without a system message gets the default system prompt baked in here;
* roles ``user``, ``tool``/``observation``, ``assistant``, ``function`` (a tool-call turn) through their
  slots; the user slot already ends with the assistant header, so ``add_generation_prompt`` adds nothing
  for ordinary templates (the prefix property holds: rendering ``messages[:k]`` is a prefix of
  rendering ``messages``);
* assistant and function turns, and the end-of-sequence EOS of ``efficient_eos`` templates, are wrapped
  in ``{% generation %}`` so that ``return_assistant_tokens_mask`` marks exactly the trained tokens;
* reasoning templates follow LLaMA-Factory's one-turn view (its DPO/KTO/inference path): thought
  blocks of earlier answers are removed (unless ``preserve_thinking``), the last answer keeps its thought
  or gets the empty one (trained with ``enable_thinking`` true, in the prompt otherwise), and a
  generation prompt ends with the empty thought when thinking is off. ``enable_thinking`` and
  ``preserve_thinking`` can be passed to ``apply_chat_template``; the run's value is baked in as default.
"""
from __future__ import annotations

import json

from llmpipe.data.templates.spec import (
    BOS,
    CONTENT,
    EOS,
    TemplateSpec,
    first_element,
    split_slot,
)


def _lit(text: str) -> str:
    # a double-quoted literal whose escapes Jinja understands (non-ASCII as \uXXXX)
    return json.dumps(text, ensure_ascii=True)


def _expr(spec: TemplateSpec, slot: str, content: str) -> str:
    """A Jinja expression for ``slot`` with the expression ``content`` in place of {{content}}."""
    parts = []
    for p in split_slot(slot):
        if p == CONTENT:
            parts.append(content)
        elif p == BOS:
            parts.append("(bos_token or '')")
        elif p == EOS:
            parts.append(_lit(spec.eos_text) if spec.eos_text is not None else "(eos_token or '')")
        else:
            parts.append(_lit(p))
    return " + ".join(parts) if parts else "''"


def _out(expr: str) -> str:
    return "{{ " + expr + " }}" if expr != "''" else ""


def _strip_thought(spec: TemplateSpec) -> str:
    """Jinja that removes every open...close thought block from ``c`` (non-greedy, as a regex would)
    and then leading newlines."""
    op, cl = (_lit(w) for w in spec.thought_words)
    return ("{% set ns = namespace(s=c, out='') %}"
            "{% for _ in range(c.count(" + op + ")) %}"
            "{% set i = ns.s.find(" + op + ") %}"
            "{% if i >= 0 %}{% set j = ns.s.find(" + cl + ", i + " + str(len(spec.thought_words[0])) + ") %}"
            "{% if j >= 0 %}{% set ns.out = ns.out + ns.s[:i] %}"
            "{% set ns.s = ns.s[j + " + str(len(spec.thought_words[1])) + ":] %}{% endif %}{% endif %}"
            "{% endfor %}{% set c = (ns.out + ns.s).lstrip('\\n') %}")


def build_jinja(spec: TemplateSpec, default_system: str | None, enable_thinking: bool | None = True,
                preserve_thinking: bool = False, frozen: bool = True) -> str:
    """The Jinja of ``spec``; ``frozen`` (default): a template's frozen text where it has one."""
    if frozen and spec.jinja_override is not None:
        return spec.jinja_override.replace("__DEFAULT_SYSTEM__", _lit(default_system or ""))
    j = ["{% set default_system = " + _lit(default_system or "") + " %}"]
    if spec.reasoning:
        think = {True: "true", False: "false", None: "none"}[enable_thinking]
        j.append("{% if enable_thinking is defined %}{% set think = enable_thinking %}"
                 "{% else %}{% set think = " + think + " %}{% endif %}")
        j.append("{% set keep = preserve_thinking if preserve_thinking is defined else "
                 + ("true" if preserve_thinking else "false") + " %}")
    j.append("{% if messages and messages[0]['role'] == 'system' %}"
             "{% set system = messages[0]['content'] or default_system %}{% set turns = messages[1:] %}"
             "{% else %}{% set system = default_system %}{% set turns = messages %}{% endif %}")
    j.append(_out(_expr(spec, spec.prefix, "''")))
    if not spec.system_in_first_user:
        j.append("{% if system %}" + _out(_expr(spec, spec.system, "system")) + "{% endif %}")
    j.append("{% for m in turns %}{% set c = m['content'] %}")
    j.append("{% if m['role'] == 'user' %}")
    if spec.system_in_first_user:
        j.append("{% if loop.first and system %}{% set c = "
                 + _expr(spec, first_element(spec.system), "system") + " + c %}{% endif %}")
    j.append(_out(_expr(spec, spec.user, "c")))
    j.append("{% elif m['role'] in ('tool', 'observation') %}" + _out(_expr(spec, spec.observation_slot, "c")))
    for role, slot in (("assistant", spec.assistant_slot), ("function", spec.function_slot)):
        j.append("{% elif m['role'] == '" + role + "' %}")
        thought_in = ""
        if spec.reasoning:
            op, cl = (_lit(w.strip()) for w in spec.thought_words)
            j.append("{% if (not loop.last and not keep) or (loop.last and think is sameas false) %}"
                     + _strip_thought(spec) + "{% endif %}")
            j.append("{% set bare = loop.last and not (" + op + " in c or " + cl + " in c) %}")
            j.append("{% if bare and think is not sameas true %}" + _out(_lit(spec.empty_thought)) + "{% endif %}")
            thought_in = "{% if bare and think is sameas true %}" + _out(_lit(spec.empty_thought)) + "{% endif %}"
        eos = ""
        if spec.efficient_eos:
            eos = "{% if loop.last and not add_generation_prompt %}{{ eos_token or '' }}{% endif %}"
        j.append("{% generation %}" + thought_in + _out(_expr(spec, slot, "c")) + eos + "{% endgeneration %}")
    j.append("{% endif %}{% endfor %}")
    if spec.reasoning:
        j.append("{% if add_generation_prompt and turns and turns[-1]['role'] not in ('assistant', 'function')"
                 " and think is not sameas true %}" + _out(_lit(spec.empty_thought)) + "{% endif %}")
    return "".join(j)
