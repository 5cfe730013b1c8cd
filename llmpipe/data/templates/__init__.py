"""Named chat templates: LLaMA-Factory's registered names, as data (spec, catalog_*), with the Jinja
generated from them (jinja) and the supervised spans (spans). No torch import here.

Public: ``TEMPLATES`` (name -> TemplateSpec), ``template_names``, ``render_template`` (the Jinja text),
``apply_template`` (put it on a tokenizer), ``check_template_fits``, ``stop_string``, ``stop_strings``,
``template_default_system``, ``default_tool_format``, ``template_spans`` (prompt/response texts for
supervised training), ``template_summary`` (one row per template for ``llmpipe-tools templates``).
"""
from __future__ import annotations

import difflib
import json

from llmpipe.data.errors import DataError
from llmpipe.data.templates.catalog import TEMPLATES
from llmpipe.data.templates.jinja import build_jinja
from llmpipe.data.templates.spans import has_thought, sft_spans, strip_thought
from llmpipe.data.templates.spec import TemplateSpec

TemplateDef = TemplateSpec  # the name earlier versions exported

__all__ = ["TEMPLATES", "TemplateDef", "TemplateSpec", "apply_template", "check_template_fits",
           "close_names", "default_tool_format", "has_thought", "render_template", "stop_string",
           "stop_strings", "strip_thought", "template_default_system", "template_names", "template_spans",
           "template_summary"]


def template_names() -> list[str]:
    return sorted(TEMPLATES)


def close_names(name: str, n: int = 3) -> list[str]:
    """Registered names that look like ``name`` (for 'did you mean' hints)."""
    names = template_names()
    low = str(name).lower()
    close = difflib.get_close_matches(low, names, n=n, cutoff=0.6)
    close += [t for t in names if t not in close and (t.startswith(low) or low.startswith(t + "_"))]
    return close[:n]


def _get(name: str) -> TemplateSpec:
    if name not in TEMPLATES:
        close = close_names(name)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise DataError(f"data.template={name!r} is not a known template{hint} "
                        f"(`llmpipe-tools templates` lists all {len(TEMPLATES)})")
    return TEMPLATES[name]


def render_template(name: str, default_system: str | None = None, enable_thinking: bool | None = True,
                    preserve_thinking: bool = False) -> str:
    """The Jinja text of template ``name``; ``default_system`` overrides the template's own default,
    ``enable_thinking`` / ``preserve_thinking`` are the default thinking mode of reasoning templates."""
    t = _get(name)
    system = default_system if default_system is not None else t.default_system
    return build_jinja(t, system, enable_thinking, preserve_thinking)


def template_default_system(name: str | None) -> str | None:
    """The system prompt template ``name`` puts in front when a conversation has none."""
    return TEMPLATES[name].default_system if name in TEMPLATES else None


def default_tool_format(name: str | None) -> str | None:
    """LLaMA-Factory's default tool format of template ``name`` (None: not a named template)."""
    return TEMPLATES[name].tool_format if name in TEMPLATES else None


def stop_string(tokenizer, name: str | None) -> str | None:
    """The string that ends an assistant turn for template ``name`` (None: the tokenizer's own)."""
    t = TEMPLATES.get(name) if name else None
    return (t.stop if t and t.stop else None) or getattr(tokenizer, "eos_token", None)


def stop_strings(tokenizer, name: str | None) -> list[str]:
    """Every string generation stops on: the end of turn and the template's other stop words."""
    first = stop_string(tokenizer, name)
    t = TEMPLATES.get(name) if name else None
    return list(dict.fromkeys([s for s in [first, *(t.stop_words if t else ())] if s]))


def apply_template(tokenizer, name: str | None, default_system: str | None = None,
                   enable_thinking: bool | None = True, preserve_thinking: bool = False) -> str:
    """Put template ``name`` on ``tokenizer`` (in place) and return its Jinja text.

    ``name=None`` keeps the tokenizer's own chat template (error when it has none). A
    ``default_system`` for the tokenizer's own template is applied by the processors instead. The text is
    always generated from the template's slots (``render_template`` gives chatml's frozen text instead).
    """
    if name is None:
        own = getattr(tokenizer, "chat_template", None)
        if not own:
            raise DataError("data.template is null but the tokenizer has no chat template; set data.template "
                            "to a named template (`llmpipe-tools templates` lists them)")
        return own if isinstance(own, str) else json.dumps(own)
    t = _get(name)
    system = default_system if default_system is not None else t.default_system
    # generated from the slots even where render_template gives a frozen text (chatml: the built-in models'
    # own template, which has no tool-call turns)
    text = build_jinja(t, system, enable_thinking, preserve_thinking, frozen=False)
    tokenizer.chat_template = text
    return text


def template_spans(tokenizer, name: str, messages: list[dict], *, enable_thinking: bool | None = True,
                   mask_history: bool = False, preserve_thinking: bool = False) -> list[tuple[str, str]]:
    """(prompt, response) texts per answer of ``messages`` under template ``name`` (see spans)."""
    return sft_spans(_get(name), messages, bos=getattr(tokenizer, "bos_token", None) or "",
                     eos=getattr(tokenizer, "eos_token", None) or "", enable_thinking=enable_thinking,
                     mask_history=mask_history, preserve_thinking=preserve_thinking)


def check_template_fits(tokenizer, name: str | None, strict: bool = True) -> str | None:
    """A message when template ``name`` does not suit ``tokenizer`` (None when it fits).

    Control strings that cannot be encoded always produce a message; with ``strict`` (default) so do
    control strings that are encodable but split into several tokens (the model never saw them as
    tokens, and generation cannot stop on a multi-token end-of-turn).
    """
    if name is None:
        if not getattr(tokenizer, "chat_template", None):
            return ("data.template is null but the tokenizer has no chat template; choose a named template "
                    "(`llmpipe-tools templates` lists them)")
        return None
    t = _get(name)
    vocab = tokenizer.get_vocab()
    unk = getattr(tokenizer, "unk_token_id", None)
    split, broken = [], []
    for m in t.markers:
        ids = tokenizer.encode(m, add_special_tokens=False)
        if (unk is not None and unk in ids) or tokenizer.decode(ids) != m:
            broken.append(m)
        elif len(ids) != 1 or m not in vocab:
            split.append(f"{m!r} ({len(ids)} pieces)")
    if t.needs_eos and not getattr(tokenizer, "eos_token", None):
        broken.append("eos_token")
    if broken:
        return (f"data.template={name!r} needs {', '.join(map(repr, broken))}, which this tokenizer cannot "
                "encode; pick a template made for this tokenizer")
    if split and strict:
        return (f"data.template={name!r} uses control strings that are not single tokens in this tokenizer: "
                f"{', '.join(split)}; the model never saw them as tokens and generation cannot stop on them "
                "(pick a template made for this tokenizer, or data.template=null for its own)")
    return None


def template_summary(name: str) -> dict:
    """One template's facts for listings: family, default system, stop words, thinking, tool format."""
    t = _get(name)
    return {"name": name, "family": t.family, "default_system": t.default_system,
            "stop_words": list(t.stop_words), "end_of_answer": ("efficient_eos" if t.efficient_eos else
                                                               t.eos_text or "eos_token"),
            "thinking": (t.empty_thought if t.reasoning else None), "tool_format": t.tool_format,
            "mm_plugin": t.mm_plugin}
