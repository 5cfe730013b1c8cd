"""All named templates: LLaMA-Factory's registered names (facts in catalog_chatml / catalog_llama /
catalog_other), keyed by name."""
from __future__ import annotations

from dataclasses import replace

from llmpipe.data.templates import catalog_chatml, catalog_llama, catalog_other
from llmpipe.data.templates.spec import TemplateSpec

# The Jinja that the built-in models' tokenizers carry (llmpipe.models.tiny puts 'chatml' with its default
# system on them, and the built-in models' content hash covers that text): frozen, so that the built-in
# models and every fingerprint made from them stay as they are. It renders LLaMA-Factory's chatml text for
# every conversation of user and assistant turns (tests/unit/data/test_templates_golden.py) and, like a
# tokenizer's own ChatML template, writes the assistant header only when a generation prompt is asked for.
# render_template('chatml') returns it; apply_template (a run with data.template=chatml) puts the Jinja
# generated from the slots on the tokenizer, which also writes tool-call turns (role function).
CHATML_FROZEN = (
    "{%- set default_system = __DEFAULT_SYSTEM__ -%}"
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


def _all() -> dict[str, TemplateSpec]:
    out: dict[str, TemplateSpec] = {}
    for module in (catalog_chatml, catalog_llama, catalog_other):
        for spec in module.SPECS:
            if spec.name in out:
                raise ValueError(f"template {spec.name!r} is defined twice")
            out[spec.name] = spec
    out["chatml"] = replace(out["chatml"], jinja_override=CHATML_FROZEN)
    return dict(sorted(out.items()))


TEMPLATES: dict[str, TemplateSpec] = _all()
