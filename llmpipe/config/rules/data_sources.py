"""Data rules that look past the config: hub datasets while offline, whether data.template fits the model's
tokenizer (read from its files when they are local, without loading it), tool formats, and per-dataset
evaluation. Registered by llmpipe.config.rules.data."""
from __future__ import annotations

from pathlib import Path

from llmpipe.config.rules._common import as_list, fmt, get, offline, problem, stage
from llmpipe.config.validate import rule


@rule("data-hub-offline", keys=["data.dataset", "data.eval_dataset", "data.dataset_dir"],
      bad=[["data.dataset_dir=ONLINE", "data.dataset=org/some_dataset"]],
      good=[["data.dataset=demo_sft"], ["data.eval_dataset=demo_sft_eval"]])
def hub_offline(cfg, env):
    """Offline (LLMPIPE_OFFLINE / HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE), no dataset can come from the hub."""
    var = offline()
    if var is None:
        return
    try:
        from llmpipe.data.registry import find_dataset
    except ImportError:
        return
    ddir = get(cfg, "data.dataset_dir", "data")
    for key in ("data.dataset", "data.eval_dataset"):
        for name in as_list(get(cfg, key)):
            try:
                spec = find_dataset(name, ddir)
            except Exception:  # noqa: BLE001  (reported by data-dataset-registered)
                continue
            if spec is not None and spec.source_kind != "file":
                yield problem("data-hub-offline", key, name,
                              f"is the hub dataset {spec.source!r} and {var} is set, so it cannot be downloaded",
                              "a dataset with a local file_name, or a file/folder path",
                              "download it where there is network, save it as json/jsonl/parquet and register "
                              f"it with file_name in dataset_info.json (or unset {var})")


def _tokenizer_facts(cfg):
    """TokenizerFacts of model.name_or_path when its tokenizer files can be read here, else None."""
    from llmpipe.data import tokfacts

    ref = str(get(cfg, "model.name_or_path", "") or "")
    if not ref:
        return None
    if ref.startswith("builtin:"):
        return tokfacts.builtin(ref)
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
    try:
        from llmpipe.data import templates, tokfacts
    except ImportError:
        return
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


@rule("data-tool-format", keys=["data.tool_format"],
      bad=[["data.tool_format=glm9"]],
      good=[["data.tool_format=qwen"], ["data.tool_format=default"], ["data.tool_format=null"]])
def tool_format(cfg, env):
    """data.tool_format names a known way of writing tool definitions, calls and results."""
    value = get(cfg, "data.tool_format")
    try:
        from llmpipe.data.tools import TOOL_FORMATS
    except ImportError:
        return
    if value and value not in TOOL_FORMATS:
        yield problem("data-tool-format", "data.tool_format", value, "is not a known tool format",
                      fmt(TOOL_FORMATS) + " (null: qwen for data.template=qwen, default otherwise)",
                      "data.tool_format=default")


@rule("data-eval-each", keys=["data.eval_on_each_dataset", "data.eval_dataset"],
      bad=[["data.eval_on_each_dataset=true"], ["data.eval_on_each_dataset=true", "data.val_size=0.1"]],
      good=[["data.eval_on_each_dataset=true", "data.eval_dataset=demo_sft_eval"]])
def eval_each(cfg, env):
    """Evaluating on each dataset separately needs the evaluation datasets named in data.eval_dataset."""
    if get(cfg, "data.eval_on_each_dataset") and not as_list(get(cfg, "data.eval_dataset")):
        yield problem("data-eval-each", "data.eval_on_each_dataset", True,
                      "there are no evaluation datasets to evaluate one by one (a val_size split is one set)",
                      "data.eval_dataset=<name>,<name>", "data.eval_dataset=<names> or data.eval_on_each_dataset=false")
