"""Pre-flight rules on the model's own facts: whether data.template fits the model's tokenizer, read from its
files when they are local (built-in models, local folders, the hub cache) without loading it. Registered by
llmpipe.pipeline.preflight with the config's and the data's rules. No torch."""
from __future__ import annotations

from pathlib import Path

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import fmt, ft_type, get, problem, stage
from llmpipe.data import templates, tokfacts
from llmpipe.models import tiny, zoo


def _builtin_facts(name: str) -> tokfacts.TokenizerFacts | None:
    """A built-in model's tokenizer, from its constants (the model is not built for this)."""
    if not (tiny.is_builtin(name) or zoo.is_zoo(name)):   # the zoo has builtin:tiny-random's tokenizer
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
    why = tokfacts.template_problem(facts, name, t.markers if t else (), bool(t and t.needs_eos))
    if why:
        fits = [n for n, d in sorted(templates.TEMPLATES.items())
                if not tokfacts.template_problem(facts, n, d.markers, d.needs_eos)]
        shown = fmt(fits[:12]) + (f" and {len(fits) - 12} more (`llmpipe-tools templates`)" if len(fits) > 12 else "")
        yield problem("data-template-fits", "data.template", name, why,
                      f"templates that fit this tokenizer: {shown}" + (" or null (its own)" if facts.has_chat_template else ""),
                      "data.template=null" if facts.has_chat_template and name else
                      f"data.template={fits[0]}" if fits else "a template made for this model")


def _own_template(cfg) -> str | None:
    """The chat template text of the model's own tokenizer when it can be read here (built-in models, local
    folders, the hub cache), else None."""
    import json

    ref = str(get(cfg, "model.name_or_path", "") or "")
    if ref.startswith("builtin:"):
        return templates.render_template(tiny.TEMPLATE_NAME, tiny.DEFAULT_SYSTEM) if _builtin_facts(ref) else None
    folder = Path(ref).expanduser() if ref else None
    if folder is not None and not folder.is_dir() and ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        from llmpipe.config.rules.model import hub_cache_dirs

        folder = tokfacts.hub_snapshot(ref, hub_cache_dirs(cfg), get(cfg, "model.model_revision"))
    if folder is None or not folder.is_dir():
        return None
    try:
        if (folder / "chat_template.jinja").is_file():
            return (folder / "chat_template.jinja").read_text(encoding="utf-8")
        own = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError):
        return None
    if isinstance(own, list):   # named templates: the default one
        own = next((t.get("template") for t in own if isinstance(t, dict) and t.get("name") == "default"), None)
    return own if isinstance(own, str) else None


@rule("data-native-template-options", keys=["data.enable_thinking", "data.preserve_thinking", "data.template",
                                            "model.name_or_path", "train.stage"],
      bad=[["data.enable_thinking=false"], ["data.enable_thinking=null"], ["data.preserve_thinking=true"]],
      good=[["data.enable_thinking=true"], ["data.template=qwen3", "data.enable_thinking=false"],
            ["data.enable_thinking=false", "train.stage=pt", "data.dataset=demo_pt"]])
def native_template_options(cfg, env):
    """With data.template=null the tokenizer's own chat template renders, and llmpipe passes data.enable_thinking
    (when not null) and data.preserve_thinking to it as the template variables of those names; a value other
    than the default for a template that does not read the variable could not act. Read from the tokenizer's
    files when they are local; otherwise the load stage checks (llmpipe.data.native_template.template_options)."""
    if get(cfg, "data.template") or stage(cfg) == "pt":
        return
    data = getattr(cfg, "data", None)
    values = {"enable_thinking": getattr(data, "enable_thinking", True) if data is not None else True,
              "preserve_thinking": bool(get(cfg, "data.preserve_thinking", False))}
    from llmpipe.data.native_template import OPTIONS, template_variables

    wrong = {k: v for k, v in values.items() if v != OPTIONS[k][1]}
    if not wrong:
        return
    text = _own_template(cfg)
    if text is None:
        return
    reads = template_variables(text)
    for key, value in wrong.items():
        if OPTIONS[key][0] not in reads:
            yield problem("data-native-template-options", f"data.{key}", value,
                          f"has no effect: data.template is null and the tokenizer's own chat template "
                          f"({get(cfg, 'model.name_or_path')}) does not read {OPTIONS[key][0]!r}",
                          f"{OPTIONS[key][1]} (the default) with this template; other values with a template that "
                          "reads it (e.g. Qwen3's) or a named reasoning template (`llmpipe-tools templates`)",
                          f"drop data.{key}, or set data.template to a named reasoning template")


def _facts(cfg):
    from llmpipe.config.rules.model import hub_cache_dirs
    from llmpipe.models.facts import facts_of

    return facts_of(str(get(cfg, "model.name_or_path", "") or ""), hub_cache_dirs(cfg), get(cfg, "model.model_revision"),
                    str(get(cfg, "run.cache_root", "") or "") or None)


T = "train.do_train=true"


@rule("model-lora-target", keys=["lora.target", "lora.additional_target", "lora.rank", "model.name_or_path"],
      bad=[[T, "lora.target=''"], [T, "lora.target='q_proj,qkv_proj'"], [T, "lora.additional_target=no_such_head"],
           [T, "lora.rank=4096"]],
      good=[[T, "lora.target=all"], [T, "lora.target='q_proj,v_proj'"], [T, "lora.additional_target=embed_tokens"],
            [T, "lora.rank=64"], [T, "lora.target='q_proj,qkv_proj'", "train.finetuning_type=full"],
            ["lora.target=qkv_proj"]])
def lora_target(cfg, env):
    """LoRA's modules exist in the model and its rank fits: lora.target names modules the model has (PEFT
    adapts the ones it finds and drops the rest without a word), and lora.rank is at most the hidden size
    (an update's rank cannot exceed its layer's smaller side). Read from the model's config.json and a
    meta-device instance, without weights; a model whose config is not local is checked by the load stage."""
    if ft_type(cfg) != "lora" or not get(cfg, "train.do_train", False):
        return
    target = get(cfg, "lora.target", [])
    if not target:
        yield problem("model-lora-target", "lora.target", "", "is empty: LoRA would adapt no module",
                      "all, or module names such as q_proj,v_proj", "lora.target=all")
        return
    facts = _facts(cfg)
    if facts is None:
        return
    rank, hidden = get(cfg, "lora.rank", 8), facts.hidden_size
    if hidden and rank > hidden:
        yield problem("model-lora-target", "lora.rank", rank,
                      f"is larger than the model's hidden size ({hidden}); an update's rank cannot exceed a layer's "
                      "smaller side, so the extra rank only costs memory", f"1..{hidden}", f"lora.rank={min(64, hidden)}")
    from llmpipe.models.adapters import HEADS

    explicit = [t for t in target if t != "all"]
    extra = [m for m in get(cfg, "lora.additional_target", []) if m not in HEADS]
    if not explicit and not extra:
        return
    modules = facts.modules()
    if modules is None:
        return
    for key, wanted in (("lora.target", explicit), ("lora.additional_target", extra)):
        missing = modules.missing(wanted)
        if missing:
            yield problem("model-lora-target", key, get(cfg, key), f"{fmt(missing)}: no such module in {facts.ref}",
                          f"its linear layers: {fmt(modules.linear)}" + (" (or all)" if key == "lora.target" else ""),
                          f"{key}={','.join(m for m in wanted if m not in missing) or 'all'}")


@rule("model-lora-fused-experts", keys=["lora.target", "lora.dropout", "lora.use_dora", "lora.pissa_init",
                                        "train.finetuning_type", "model.name_or_path"],
      bad=[[T, "model.name_or_path=builtin:tiny-qwen3-moe", "lora.dropout=0.1"],
           [T, "model.name_or_path=builtin:tiny-mixtral", "lora.use_dora=true"]],
      good=[[T, "lora.dropout=0.1"], [T, "model.name_or_path=builtin:tiny-qwen3-moe"],
            [T, "model.name_or_path=builtin:tiny-qwen3-moe", "lora.dropout=0.1", "lora.target=q_proj"]])
def lora_fused_experts(cfg, env):
    """lora.target=all puts LoRA on a mixture-of-experts model's fused 3-D expert weights through PEFT's parameter
    LoRA (llmpipe.models.moe_lora), which has no dropout, no DoRA and no PiSSA initialisation; with one of them
    set it could not act there, so it is refused. Read from config.json and a meta-device instance."""
    if ft_type(cfg) != "lora" or not get(cfg, "train.do_train", False) or list(get(cfg, "lora.target", [])) != ["all"]:
        return
    on = [(k, get(cfg, k)) for k in ("lora.dropout", "lora.use_dora", "lora.pissa_init") if get(cfg, k)]
    if not on:
        return
    facts = _facts(cfg)
    if facts is None:
        return
    from llmpipe.models.moe_lora import fused_expert_count

    n = fused_expert_count(facts.config)
    for key, value in on:
        if n:
            yield problem("model-lora-fused-experts", key, value,
                          f"lora.target=all on {facts.ref} puts LoRA on its {n} fused expert weights through PEFT's "
                          "parameter LoRA, which has no dropout, DoRA or PiSSA initialisation",
                          "the default (off) with lora.target=all on this model",
                          f"drop {key}, or name the modules in lora.target (then the fused experts get no LoRA)")


@rule("model-oft-target", keys=["oft.target", "train.finetuning_type", "model.name_or_path"],
      bad=[[T, "train.finetuning_type=oft", "oft.target=''"], [T, "train.finetuning_type=oft", "oft.target='q_proj,qkv_proj'"]],
      good=[[T, "train.finetuning_type=oft"], [T, "train.finetuning_type=oft", "oft.target='q_proj,v_proj'"],
            [T, "oft.target=qkv_proj"]])
def oft_target(cfg, env):
    """OFT's modules exist in the model: oft.target names modules the model has (PEFT adapts the ones it finds
    and drops the rest without a word). From config.json and a meta-device instance, without weights."""
    if ft_type(cfg) != "oft" or not get(cfg, "train.do_train", False):
        return
    target = get(cfg, "oft.target", [])
    if not target:
        yield problem("model-oft-target", "oft.target", "", "is empty: OFT would adapt no module",
                      "all, or module names such as q_proj,v_proj", "oft.target=all")
        return
    explicit = [t for t in target if t != "all"]
    facts = _facts(cfg) if explicit else None
    modules = facts.modules() if facts is not None else None
    if modules is None:
        return
    missing = modules.missing(explicit)
    if missing:
        yield problem("model-oft-target", "oft.target", target, f"{fmt(missing)}: no such module in {facts.ref}",
                      f"its linear layers: {fmt(modules.linear)} (or all)",
                      f"oft.target={','.join(m for m in explicit if m not in missing) or 'all'}")


@rule("model-freeze-layers", keys=["freeze.trainable_layers", "freeze.use_llama_pro", "freeze.trainable_modules",
                                   "freeze.extra_modules", "model.name_or_path"],
      bad=[[T, "train.finetuning_type=freeze", "freeze.trainable_layers=3"],
           [T, "train.finetuning_type=freeze", "freeze.trainable_layers=-5"],
           [T, "train.finetuning_type=freeze", "freeze.use_llama_pro=true", "freeze.trainable_layers=3"],
           [T, "train.finetuning_type=freeze", "freeze.extra_modules=no_such_module"]],
      good=[[T, "train.finetuning_type=freeze", "freeze.trainable_layers=2"],
            [T, "train.finetuning_type=freeze", "freeze.trainable_layers=-1"],
            [T, "train.finetuning_type=freeze", "freeze.use_llama_pro=true", "freeze.trainable_layers=2"],
            [T, "train.finetuning_type=freeze", "freeze.extra_modules=embed_tokens"],
            [T, "freeze.trainable_layers=3"]])
def freeze_layers(cfg, env):
    """Freeze fine-tuning picks layers the model has: |freeze.trainable_layers| is at most its depth (with
    LLaMA Pro, a count of new blocks that divides it), and the named modules exist. From config.json and a
    meta-device instance, without weights."""
    if ft_type(cfg) != "freeze" or not get(cfg, "train.do_train", False):
        return
    facts = _facts(cfg)
    if facts is None:
        return
    n, depth = get(cfg, "freeze.trainable_layers", 2), facts.depth
    if depth:
        if get(cfg, "freeze.use_llama_pro", False):
            if n >= 1 and depth % n:
                yield problem("model-freeze-layers", "freeze.trainable_layers", n,
                              f"LLaMA Pro inserts one block after every {depth}/n-th block; {n} does not divide "
                              f"the model's {depth} blocks", fmt(d for d in range(1, depth + 1) if depth % d == 0),
                              "freeze.trainable_layers=1")
        elif abs(n) > depth:
            yield problem("model-freeze-layers", "freeze.trainable_layers", n,
                          f"the model has only {depth} decoder blocks", f"1..{depth} (the last n) or -1..-{depth} (the first n)",
                          f"freeze.trainable_layers={depth if n > 0 else -depth}")
    wanted = [m for key in ("freeze.trainable_modules", "freeze.extra_modules") for m in get(cfg, key, []) if m != "all"]
    if not wanted:
        return
    modules = facts.modules()
    if modules is None:
        return
    for key in ("freeze.trainable_modules", "freeze.extra_modules"):
        missing = modules.missing([m for m in get(cfg, key, []) if m != "all"])
        if missing:
            yield problem("model-freeze-layers", key, get(cfg, key), f"{fmt(missing)}: no such module in {facts.ref}",
                          f"module names of the model, e.g. {fmt(modules.linear)}", f"remove {fmt(missing)}")


_ROUTER_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")


@rule("model-moe-aux-loss", keys=["model.moe_aux_loss_coef", "model.name_or_path"],
      bad=[["model.moe_aux_loss_coef=0.01"], ["model.name_or_path=llmpipe-test/cached", "model.moe_aux_loss_coef=0.01"]],
      good=[["model.moe_aux_loss_coef=null"], ["model.name_or_path=llmpipe-test/uncached", "model.moe_aux_loss_coef=0.01"]])
def moe_aux_loss(cfg, env):
    """model.moe_aux_loss_coef weighs the auxiliary loss of a mixture-of-experts router; a model without a router
    (its config.json names no experts) has no such loss, so the value could not act. Read from config.json, without
    weights; a model whose config is not local is checked when it loads (then the coefficient is logged as unused)."""
    coef = get(cfg, "model.moe_aux_loss_coef")
    if coef is None:
        return
    facts = _facts(cfg)
    if facts is None:
        return
    from llmpipe.models.patches import MOE_COEF_ATTRS

    text = facts.config.get("text_config") if isinstance(facts.config.get("text_config"), dict) else {}
    sources = (facts.config, text)
    kind = facts.config.get("model_type", "?")
    if any(k in source for source in sources for k in MOE_COEF_ATTRS) or _class_has_coef(sources, MOE_COEF_ATTRS):
        return
    if any(k in source for source in sources for k in _ROUTER_KEYS):
        yield problem("model-moe-aux-loss", "model.moe_aux_loss_coef", coef,
                      f"{facts.ref} ({kind}) routes its experts without an auxiliary loss (its config has no "
                      f"{', '.join(MOE_COEF_ATTRS)}; DeepSeek-V3 balances its experts with a bias instead), so "
                      "there is no router loss to weigh", "null (unset) for this model", "drop model.moe_aux_loss_coef")
        return
    yield problem("model-moe-aux-loss", "model.moe_aux_loss_coef", coef,
                  f"{facts.ref} ({kind}) is not a mixture-of-experts model: its config names no experts "
                  f"({', '.join(_ROUTER_KEYS)}), so there is no router loss to weigh",
                  "null (unset) for a model without experts", "drop model.moe_aux_loss_coef")


def _class_has_coef(sources, attrs) -> bool:
    """Whether the config class of a model type has a router loss coefficient by default (config.json leaves out
    default values); True when the type is unknown here, so that nothing is refused on a guess."""
    for source in sources:
        kind = source.get("model_type")
        if not kind:
            continue
        try:
            from transformers import CONFIG_MAPPING

            config = CONFIG_MAPPING[kind]()
        except (KeyError, ValueError, TypeError, ImportError):   # a type this transformers does not know
            return True
        if any(hasattr(config, a) for a in attrs):
            return True
    return False


@rule("model-galore-target", keys=["galore.target", "galore.use_galore", "apollo.target", "apollo.use_apollo",
                                   "model.name_or_path"],
      bad=[[T, "train.finetuning_type=full", "galore.use_galore=true", "galore.target=mlp"],
           [T, "train.finetuning_type=full", "galore.use_galore=true", "galore.target='q_proj,qkv_proj'"],
           [T, "train.finetuning_type=full", "apollo.use_apollo=true", "apollo.target=self_attn"]],
      good=[[T, "train.finetuning_type=full", "galore.use_galore=true"],
            [T, "train.finetuning_type=full", "galore.use_galore=true", "galore.target='gate_proj,q_proj'"],
            [T, "train.finetuning_type=full", "apollo.use_apollo=true", "apollo.target='gate_proj,q_proj'"],
            [T, "galore.target=mlp"]],
      env={"available_packages": frozenset({"galore_torch", "apollo_torch"})})
def galore_target(cfg, env):
    """GaLore and APOLLO project the gradients of the linear layers galore.target / apollo.target name (by their
    last name, such as q_proj, or their full name; training/optimizers.galore_targets): a name that is no linear
    layer of the model (a block such as mlp or self_attn) matches nothing, and the optimizer could not be built.
    From config.json and a meta-device instance, without weights."""
    if not get(cfg, "train.do_train", False):
        return
    for family, name in (("galore", "GaLore"), ("apollo", "APOLLO")):
        if not get(cfg, f"{family}.use_{family}", False):
            continue
        wanted = [t for t in get(cfg, f"{family}.target", []) if t != "all"]
        facts = _facts(cfg) if wanted else None
        modules = facts.modules() if facts is not None else None
        if modules is None:
            continue
        linear = set(modules.linear)
        missing = [w for w in wanted if w not in linear and not (w in modules.names and w.rsplit(".", 1)[-1] in linear)]
        if missing:
            yield problem("model-galore-target", f"{family}.target", get(cfg, f"{family}.target"),
                          f"{fmt(missing)}: no linear layer of {facts.ref} has this name ({name} matches a linear "
                          "layer's last name or full name, not a block such as mlp)",
                          f"all, or its linear layers: {fmt(sorted(linear))}",
                          f"{family}.target={','.join(w for w in wanted if w not in missing) or 'all'}")
