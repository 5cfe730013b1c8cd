"""Pre-flight rules on the model's own facts: whether data.template fits the model's tokenizer, read from its
files when they are local (built-in models, local folders, the hub cache) without loading it. Registered by
llmpipe.pipeline.preflight with the config's and the data's rules. No torch."""
from __future__ import annotations

from pathlib import Path

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import fmt, get, problem, stage
from llmpipe.data import templates, tokfacts
from llmpipe.models import tiny


def _builtin_facts(name: str) -> tokfacts.TokenizerFacts | None:
    """A built-in model's tokenizer, from its constants (the model is not built for this)."""
    if not tiny.is_builtin(name):
        return None
    return tokfacts.TokenizerFacts(name, frozenset(tiny.SPECIAL_TOKENS), tiny.EOS, True)


def _tokenizer_facts(cfg):
    """TokenizerFacts of model.name_or_path when its tokenizer files can be read here, else None."""
    ref = str(get(cfg, "model.name_or_path", "") or "")
    if not ref:
        return None
    if ref.startswith("builtin:"):
        return _builtin_facts(ref)
    path = Path(ref).expanduser()
    if path.is_dir():
        return tokfacts.from_folder(path)
    if ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        from llmpipe.config.rules.model import hub_cache_dirs

        snap = tokfacts.hub_snapshot(ref, hub_cache_dirs(cfg), get(cfg, "model.model_revision"))
        return tokfacts.from_folder(snap) if snap else None
    return None


@rule("data-template-fits", keys=["data.template", "model.name_or_path", "train.stage"],
      bad=[["data.template=llama3"], ["data.template=gemma"]],
      good=[["data.template=chatml"], ["data.template=qwen"], ["data.template=null"], ["data.template=default"],
            ["data.template=llama3", "train.stage=pt", "data.dataset=demo_pt"]])
def template_fits(cfg, env):
    """data.template must fit the model's tokenizer: its control strings are tokens of that tokenizer
    (template: null needs the tokenizer's own chat template). Checked here when the tokenizer files are
    local (built-in models, local folders, hub cache); the load stage checks again with the tokenizer."""
    name = get(cfg, "data.template")
    if stage(cfg) == "pt":
        return  # pre-training text is not put through a chat template
    if name and name not in templates.TEMPLATES:
        return  # reported by data-template
    facts = _tokenizer_facts(cfg)
    if facts is None:
        return
    t = templates.TEMPLATES.get(name) if name else None
    why = tokfacts.template_problem(facts, name, t.markers if t else (), bool(t and "eos_token +" in t.jinja))
    if why:
        fits = [n for n, d in sorted(templates.TEMPLATES.items())
                if not tokfacts.template_problem(facts, n, d.markers, "eos_token +" in d.jinja)]
        yield problem("data-template-fits", "data.template", name, why,
                      f"templates that fit this tokenizer: {fmt(fits)}" + (" or null (its own)" if facts.has_chat_template else ""),
                      "data.template=null" if facts.has_chat_template and name else
                      f"data.template={fits[0]}" if fits else "a template made for this model")
