"""Named chat templates (Jinja, our own) and how they are put on a tokenizer.

Every template wraps assistant content in ``{% generation %}...{% endgeneration %}`` so that
transformers' ``return_assistant_tokens_mask`` and TRL's ``assistant_only_loss`` work, and keeps the
prefix property (rendering ``messages[:k]`` is a prefix of rendering ``messages``) that the supervised
processor relies on. No torch import here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from llmpipe.data.errors import DataError

_SYS = "__DEFAULT_SYSTEM__"  # replaced by a Jinja string literal in render_template()


@dataclass(frozen=True)
class TemplateDef:
    name: str
    jinja: str
    default_system: str | None
    markers: tuple[str, ...]  # literal control strings that should be single tokens
    stop: str | None  # end-of-turn string (None: the tokenizer's eos_token)


_CHATML = (
    "{%- set default_system = " + _SYS + " -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' and default_system -%}"
    "{{- '<|im_start|>system\\n' + default_system + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}{{- '\\n' -}}"
    "{%- else -%}{{- message['content'] + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_LLAMA3 = (
    "{%- set default_system = " + _SYS + " -%}"
    "{{- '<|begin_of_text|>' -}}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' and default_system -%}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + default_system + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- set role = 'ipython' if message['role'] == 'tool' else message['role'] -%}"
    "{{- '<|start_header_id|>' + role + '<|end_header_id|>\\n\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + '<|eot_id|>' -}}{% endgeneration %}"
    "{%- else -%}{{- message['content'] + '<|eot_id|>' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

# Mistral and Gemma have no system role: the system text is put in front of the first user turn.
_MISTRAL = (
    "{%- set default_system = " + _SYS + " -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set messages = messages[1:] -%}"
    "{%- else -%}{%- set system = default_system -%}{%- endif -%}"
    "{%- if bos_token -%}{{- bos_token -}}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + eos_token -}}{% endgeneration %}"
    "{%- else -%}"
    "{{- '[INST] ' + ((system + '\\n\\n') if loop.first and system else '') + message['content'] + '[/INST]' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

_GEMMA = (
    "{%- set default_system = " + _SYS + " -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set messages = messages[1:] -%}"
    "{%- else -%}{%- set system = default_system -%}{%- endif -%}"
    "{%- if bos_token -%}{{- bos_token -}}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}"
    "{{- '<start_of_turn>' + role + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + '<end_of_turn>' -}}{% endgeneration %}{{- '\\n' -}}"
    "{%- else -%}"
    "{{- ((system + '\\n\\n') if loop.first and system else '') + message['content'] + '<end_of_turn>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

_DEFAULT = (
    "{%- set default_system = " + _SYS + " -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' and default_system -%}"
    "{{- 'System: ' + default_system + '\\n' -}}"
    "{%- endif -%}"
    "{%- if message['role'] == 'system' -%}{{- 'System: ' + message['content'] + '\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- 'Assistant: ' -}}{% generation %}{{- message['content'] + eos_token -}}{% endgeneration %}{{- '\\n' -}}"
    "{%- elif message['role'] == 'tool' -%}{{- 'Observation: ' + message['content'] + '\\n' -}}"
    "{%- else -%}{{- 'Human: ' + message['content'] + '\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant: ' -}}{%- endif -%}"
)

TEMPLATES: dict[str, TemplateDef] = {
    t.name: t
    for t in (
        TemplateDef("chatml", _CHATML, None, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
        TemplateDef("qwen", _CHATML, "You are a helpful assistant.", ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
        TemplateDef("llama3", _LLAMA3, None,
                    ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
        # [INST] is plain text in the Mistral v0.1 tokenizer (several pieces) and a control token in later
        # ones: both are the model's own format, so it is not required to be a single token.
        TemplateDef("mistral", _MISTRAL, None, (), None),
        TemplateDef("gemma", _GEMMA, None, ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
        TemplateDef("default", _DEFAULT, None, (), None),
    )
}


def template_names() -> list[str]:
    return sorted(TEMPLATES)


def _get(name: str) -> TemplateDef:
    if name not in TEMPLATES:
        raise DataError(f"data.template={name!r} is not a known template; allowed: {', '.join(template_names())} "
                        "(or null to use the tokenizer's own chat template)")
    return TEMPLATES[name]


def render_template(name: str, default_system: str | None = None) -> str:
    """The Jinja text of template ``name``; ``default_system`` overrides the template's own default."""
    t = _get(name)
    system = default_system if default_system is not None else t.default_system
    # json.dumps(ensure_ascii) gives a double-quoted literal whose escapes Jinja understands.
    return t.jinja.replace(_SYS, json.dumps(system or "", ensure_ascii=True))


def template_default_system(name: str | None) -> str | None:
    """The system prompt template ``name`` puts in front when a conversation has none."""
    return TEMPLATES[name].default_system if name in TEMPLATES else None


def stop_string(tokenizer, name: str | None) -> str | None:
    """The string that ends an assistant turn for template ``name`` (None: the tokenizer's own)."""
    t = TEMPLATES.get(name) if name else None
    return (t.stop if t and t.stop else None) or getattr(tokenizer, "eos_token", None)


def apply_template(tokenizer, name: str | None, default_system: str | None = None) -> str:
    """Put template ``name`` on ``tokenizer`` (in place) and return its Jinja text.

    ``name=None`` keeps the tokenizer's own chat template (error when it has none). A
    ``default_system`` for the tokenizer's own template is applied by the processors instead.
    """
    if name is None:
        own = getattr(tokenizer, "chat_template", None)
        if not own:
            raise DataError("data.template is null but the tokenizer has no chat template; set data.template "
                            f"to one of: {', '.join(template_names())}")
        return own if isinstance(own, str) else json.dumps(own)
    text = render_template(name, default_system)
    tokenizer.chat_template = text
    return text


def check_template_fits(tokenizer, name: str | None, strict: bool = True) -> str | None:
    """A message when template ``name`` does not suit ``tokenizer`` (None when it fits).

    Control strings that cannot be encoded always produce a message; with ``strict`` (default) so do
    control strings that are encodable but split into several tokens (the model never saw them as
    tokens, and generation cannot stop on a multi-token end-of-turn).
    """
    if name is None:
        if not getattr(tokenizer, "chat_template", None):
            return ("data.template is null but the tokenizer has no chat template; choose one of: "
                    + ", ".join(template_names()))
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
    for attr in ("eos_token",) if "eos_token +" in t.jinja else ():
        if not getattr(tokenizer, attr, None):
            broken.append(attr)
    if broken:
        return (f"data.template={name!r} needs {', '.join(map(repr, broken))}, which this tokenizer cannot "
                "encode; pick a template made for this tokenizer")
    if split and strict:
        return (f"data.template={name!r} uses control strings that are not single tokens in this tokenizer: "
                f"{', '.join(split)}; the model never saw them as tokens and generation cannot stop on them "
                "(pick a template made for this tokenizer, or data.template=null for its own)")
    return None
