"""Pre-flight rules on the data's own facts: the dataset registry (every name declared, the format each train
stage needs, hub datasets while offline, the export's calibration set), the chat templates and tool formats,
They live here, not in llmpipe.config.rules, because they read this package's tables and files; the
pre-flight session (llmpipe.pipeline.preflight) registers them with the config's rules. No torch."""
from __future__ import annotations

import difflib
from typing import Any

from llmpipe.config.environment import offline
from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import fmt, get, problem, stage
from llmpipe.config.train_stages import TRAIN_STAGES
from llmpipe.data import registry, templates
from llmpipe.data.errors import DataError
from llmpipe.data.tools import TOOL_FORMATS

EXPORT_Q = ["export.dir=/tmp/llmpipe-export", "export.quantization_bit=4"]


@rule("data-hub-offline", keys=["data.dataset", "data.eval_dataset", "data.dataset_dir"],
      bad=[["data.dataset_dir=ONLINE", "data.dataset=org/some_dataset"]],
      good=[["data.dataset=demo_sft"], ["data.eval_dataset=demo_sft_eval"]])
def hub_offline(cfg, env):
    """Offline (LLMPIPE_OFFLINE / HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE), no dataset can come from the hub."""
    var = offline(datasets=True)
    if var is None:
        return
    ddir = get(cfg, "data.dataset_dir", "data")
    for key in ("data.dataset", "data.eval_dataset"):
        for name in get(cfg, key, []):
            try:
                spec = registry.find_dataset(name, ddir)
            except Exception:  # noqa: BLE001  (reported by data-dataset-registered)
                continue
            if spec is not None and spec.source_kind != "file":
                yield problem("data-hub-offline", key, name,
                              f"is the hub dataset {spec.source!r} and {var} is set, so it cannot be downloaded",
                              "a dataset with a local file_name, or a file/folder path",
                              "download it where there is network, save it as json/jsonl/parquet and register "
                              f"it with file_name in dataset_info.json (or unset {var})")


@rule("data-tool-format", keys=["data.tool_format"],
      bad=[["data.tool_format=glm9"]],
      good=[["data.tool_format=qwen"], ["data.tool_format=default"], ["data.tool_format=null"]])
def tool_format(cfg, env):
    """data.tool_format names a known way of writing tool definitions, calls and results."""
    value = get(cfg, "data.tool_format")
    if value and value not in TOOL_FORMATS:
        yield problem("data-tool-format", "data.tool_format", value, "is not a known tool format",
                      fmt(TOOL_FORMATS) + " (null: qwen for data.template=qwen, default otherwise)",
                      "data.tool_format=default")


@rule("data-eval-each", keys=["data.eval_on_each_dataset", "data.eval_dataset"],
      bad=[["data.eval_on_each_dataset=true"], ["data.eval_on_each_dataset=true", "data.val_size=0.1"]],
      good=[["data.eval_on_each_dataset=true", "data.eval_dataset=demo_sft_eval"]])
def eval_each(cfg, env):
    """Evaluating on each dataset separately needs the evaluation datasets named in data.eval_dataset."""
    if get(cfg, "data.eval_on_each_dataset") and not get(cfg, "data.eval_dataset"):
        yield problem("data-eval-each", "data.eval_on_each_dataset", True,
                      "there are no evaluation datasets to evaluate one by one (a val_size split is one set)",
                      "data.eval_dataset=<name>,<name>", "data.eval_dataset=<names> or data.eval_on_each_dataset=false")


KIND_TEXT = {
    "pairwise": "a pairwise preference dataset (ranking: true; prompt + chosen + rejected)",
    "kto": "a KTO dataset (one response per example, labelled desirable or not through kto_tag)",
    "plain": "a plain dataset (prompt/response, messages or text; no ranking, no kto_tag)",
}


def _kind(spec: Any) -> str:
    if getattr(spec, "ranking", False):
        return "pairwise"
    if getattr(spec, "kto", False):
        return "kto"
    return "plain"


def _datasets(cfg: Any) -> list[tuple[str, str]]:
    return [(key, name) for key in ("data.dataset", "data.eval_dataset") for name in get(cfg, key, [])]


@rule("data-dataset-registered", keys=["data.dataset", "data.eval_dataset"],
      bad=[["data.dataset=no_such_dataset"], ["data.eval_dataset=demo_sft_evaluation"]],
      good=[["data.dataset=demo_sft"], ["data.eval_dataset=demo_sft_eval"]])
def dataset_registered(cfg, env):
    """Every dataset name must be declared in dataset_info.json of data.dataset_dir (or the bundled one)."""
    reg = registry
    ddir = get(cfg, "data.dataset_dir", "data")
    try:
        reg.known_names(ddir)
    except Exception as e:  # unreadable dataset_info.json and the like
        yield problem("data-dataset-registered", "data.dataset_dir", ddir, f"cannot read the dataset registry: {e}",
                      "a folder with a valid dataset_info.json", "data.dataset_dir=<folder with dataset_info.json>")
        return
    for key, name in _datasets(cfg):
        try:
            spec = reg.find_dataset(name, ddir)
        except Exception as e:  # this dataset's entry or file: a missing file, a file that cannot be read
            yield problem("data-dataset-registered", key, name, f"cannot be used: {e}",
                          "an existing, readable data file (or a dataset_info.json entry naming one)",
                          "fix the file or its dataset_info.json entry")
            continue
        if spec is None:
            try:
                known = list(reg.known_names(ddir))
            except Exception:
                known = []
            close = difflib.get_close_matches(name, known, n=1)
            yield problem("data-dataset-registered", key, name,
                          f"is not declared in dataset_info.json (searched data.dataset_dir={ddir!r} and the bundled data)",
                          fmt(sorted(known)[:12]) + (" ..." if len(known) > 12 else ""),
                          f"{key}={close[0]}" if close else "add an entry for it to <data.dataset_dir>/dataset_info.json")


@rule("data-streaming-media", keys=["data.streaming", "data.dataset", "data.eval_dataset"],
      bad=[["model.name_or_path=builtin:tiny_vl", "data.dataset=vlm_colours", "data.streaming=true",
            "train.max_steps=10"]],
      good=[["data.dataset=demo_sft", "data.streaming=true", "train.max_steps=10"],
            ["model.name_or_path=builtin:tiny_vl", "data.dataset=vlm_colours"]])
def streaming_media(cfg, env):
    """A streamed dataset is tokenized as text only (llmpipe.data.streaming): one with images, videos or audios
    columns cannot stream."""
    from llmpipe.data.streaming import NO_MEDIA, media_columns

    if not get(cfg, "data.streaming"):
        return
    ddir = get(cfg, "data.dataset_dir", "data")
    for key, name in _datasets(cfg):
        try:
            cols = media_columns(registry.find_dataset(name, ddir))
        except Exception:  # noqa: BLE001, S112  (reported by data-dataset-registered)
            continue
        if cols:
            yield problem("data-streaming-media", key, name, f"is registered with media ({', '.join(cols)}), and {NO_MEDIA}",
                          "data.streaming=false for a dataset with media", "data.streaming=false")


@rule("data-dataset-names", keys=["data.dataset", "data.eval_dataset"],
      bad=[["data.dataset='demo_sft,demo_sft'"], ["data.eval_dataset='demo_sft_eval, demo_sft_eval'"]],
      good=[["data.dataset='demo_sft,demo_sft_zh'"], ["data.dataset=demo_sft"]])
def dataset_names(cfg, env):
    """A dataset list names each dataset once: a repeated name would load it again and train on a different
    mix than the one meant. (Empty names are refused for every list flag by the field checks.)"""
    for key in ("data.dataset", "data.eval_dataset"):
        names = get(cfg, key, [])
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            yield problem("data-dataset-names", key, names, f"names {fmt(twice)} more than once; each would be loaded again",
                          "each dataset once (data.mix_strategy and data.interleave_probs weight datasets)",
                          f"{key}={','.join(dict.fromkeys(names))}")


@rule("data-dataset-dir", keys=["data.dataset_dir"],
      bad=[["data.dataset_dir=/no/such/folder"], ["data.dataset_dir=/etc"]],
      good=[["data.dataset_dir=data"], ["data.dataset_dir=ONLINE"]])
def dataset_dir(cfg, env):
    """A data.dataset_dir other than the default must be a folder with a dataset_info.json (or holding the
    named dataset files); otherwise every name would silently come from the bundled registry instead."""
    ddir = str(get(cfg, "data.dataset_dir", "data") or "")
    if ddir in ("", "data") or ddir.upper() == "ONLINE" or ddir.upper().startswith("REMOTE:"):
        return
    from pathlib import Path

    folder = Path(ddir).expanduser()
    if not folder.is_dir():
        why = "does not exist" if not folder.exists() else "is not a folder"
        yield problem("data-dataset-dir", "data.dataset_dir", ddir, why,
                      "a folder with dataset_info.json and the dataset files", "data.dataset_dir=<that folder>")
        return
    if (folder / "dataset_info.json").is_file():
        return
    names = [n for _, n in _datasets(cfg)]
    if names and any((folder / n).exists() for n in names):
        return
    yield problem("data-dataset-dir", "data.dataset_dir", ddir,
                  "has no dataset_info.json and none of the named datasets; it is not a dataset folder",
                  "a folder with dataset_info.json (LLaMA-Factory's layout)",
                  "data.dataset_dir=<folder with dataset_info.json>, or leave it unset for the bundled datasets")


@rule("data-stage-format", keys=["train.stage", "data.dataset", "data.eval_dataset"],
      bad=[["train.stage=dpo"], ["train.stage=rm"], ["train.stage=kto"],
           ["train.stage=sft", "data.dataset=demo_pref"], ["train.stage=dpo", "data.dataset=demo_kto"]],
      good=[["train.stage=dpo", "data.dataset=demo_pref"], ["train.stage=rm", "data.dataset=demo_pref"],
            ["train.stage=kto", "data.dataset=demo_kto"], ["train.stage=pt", "data.dataset=demo_pt"]])
def stage_format(cfg, env):
    """rm/dpo train on pairwise data, kto on KTO-tagged data, pt/sft/ppo on plain data."""
    reg = registry
    st = stage(cfg)
    want = TRAIN_STAGES[st].dataset_format if st in TRAIN_STAGES else None
    ddir = get(cfg, "data.dataset_dir", "data")
    for key, name in _datasets(cfg):
        try:
            spec = reg.find_dataset(name, ddir)
        except Exception:
            return  # reported by data-dataset-registered
        if spec is None or want is None or _kind(spec) == want:
            continue
        try:
            fits = [n for n in reg.known_names(ddir) if (s := reg.find_dataset(n, ddir)) and _kind(s) == want]
        except Exception:
            fits = []
        hint = {"ppo": "sft"}.get(st, st)   # suggest a dataset named after the stage (ppo: the sft prompts)
        fix = next((f for f in sorted(fits) if hint in f), sorted(fits)[0]) if fits else None
        yield problem("data-stage-format", key, name,
                      f"is {KIND_TEXT[_kind(spec)]}, but train.stage={st} needs {KIND_TEXT[want]}",
                      f"for train.stage={st}: " + (fmt(sorted(fits)[:8]) if fits else KIND_TEXT[want]),
                      f"{key}={fix}" if fix else f"{key}=<{want} dataset>, or change train.stage")


@rule("data-enable-thinking", keys=["data.enable_thinking", "data.template", "train.stage"],
      bad=[["data.template=chatml", "data.enable_thinking=false"], ["data.template=chatml", "data.enable_thinking=null"],
           ["data.template=qwen3_nothink", "data.enable_thinking=false"]],
      good=[["data.enable_thinking=true"], ["data.template=qwen3", "data.enable_thinking=false"],
            ["data.template=qwen3", "data.enable_thinking=null"], ["data.template=deepseekr1", "data.enable_thinking=false"]])
def enable_thinking(cfg, env):
    """data.enable_thinking (true / false / null = follow the data) switches the thought blocks of reasoning
    templates (those with thought words, e.g. qwen3, deepseekr1, glm4_moe, gpt_oss); any other template renders
    answers as they are, so a value other than the default means nothing there and is refused."""
    data = getattr(cfg, "data", None)
    value = getattr(data, "enable_thinking", True) if data is not None else True   # null is a value here
    if value is True or stage(cfg) == "pt":
        return
    name = get(cfg, "data.template")
    spec = templates.TEMPLATES.get(name) if name else None
    if spec is None:
        return   # an unknown name: data-template; null: data-native-template-options (the tokenizer's template)
    if spec.reasoning:
        return
    reasoning = [n for n, t in templates.TEMPLATES.items() if t.reasoning]
    why = (f"has no effect with data.template={name}, which has no thought words (it renders answers, "
           "<think> blocks included, as they are)")
    sibling = name[:-len("_nothink")] if name and name.endswith("_nothink") else None
    yield problem("data-enable-thinking", "data.enable_thinking", value, why,
                  f"true (the default) here; false/null with a reasoning template: {fmt(reasoning[:10])} ...",
                  f"drop data.enable_thinking ({name} already renders without thinking), or data.template={sibling} "
                  "with it (the empty thought in every prompt)" if sibling in templates.TEMPLATES
                  else "drop data.enable_thinking, or pick a reasoning template")


@rule("data-preserve-thinking", keys=["data.preserve_thinking", "data.template", "train.stage"],
      bad=[["data.template=chatml", "data.preserve_thinking=true"],
           ["data.template=qwen3_nothink", "data.preserve_thinking=true"]],
      good=[["data.preserve_thinking=false"], ["data.template=qwen3", "data.preserve_thinking=true"]])
def preserve_thinking(cfg, env):
    """data.preserve_thinking keeps the thought blocks of earlier answers, which reasoning templates otherwise
    remove (at inference, and in training with mask_history); with any other template it means nothing."""
    if not get(cfg, "data.preserve_thinking") or stage(cfg) == "pt":
        return
    name = get(cfg, "data.template")
    spec = templates.TEMPLATES.get(name) if name else None
    if spec is None or spec.reasoning:
        return   # null: data-native-template-options (the tokenizer's own template)
    yield problem("data-preserve-thinking", "data.preserve_thinking", True,
                  f"has no effect: data.template={name} has no thought words, so there are no thought blocks to "
                  "keep or remove",
                  "false here; true with a reasoning template (see `llmpipe-tools templates`)",
                  "data.preserve_thinking=false")


@rule("data-template-train-on-prompt", keys=["data.template", "data.train_on_prompt", "train.stage"],
      bad=[["data.template=glm4", "data.train_on_prompt=true"], ["data.template=falcon", "data.train_on_prompt=true"]],
      good=[["data.template=chatml", "data.train_on_prompt=true"], ["data.template=glm4"]])
def train_on_prompt_eos(cfg, env):
    """Templates with efficient_eos (no EOS in answers; the first prompt token after an answer is trained to
    predict EOS instead) cannot also train on the prompt, as in LLaMA-Factory."""
    name = get(cfg, "data.template")
    spec = templates.TEMPLATES.get(name) if name else None
    if spec is None or not spec.efficient_eos or not get(cfg, "data.train_on_prompt") or stage(cfg) == "pt":
        return
    yield problem("data-template-train-on-prompt", "data.train_on_prompt", True,
                  f"data.template={name} ends answers with no EOS and teaches EOS through the label of the next "
                  "prompt's first token, so the prompt cannot be trained too (LLaMA-Factory refuses it as well)",
                  "false with this template", "data.train_on_prompt=false")


@rule("data-template", keys=["data.template"],
      bad=[["data.template=chatmll"], ["data.template=no_such_template"]],
      good=[["data.template=chatml"], ["data.template=null"]])
def template_exists(cfg, env):
    """data.template must be a registered chat template (unset = the tokenizer's own)."""
    name = get(cfg, "data.template")
    if not name:
        return
    names = list(templates.template_names())
    if name not in names:
        close = templates.close_names(str(name))
        yield problem("data-template", "data.template", name, "is not a known chat template",
                      f"one of the {len(names)} named templates (`llmpipe-tools templates` lists them: "
                      + fmt(names[:12]) + " ...), or null for the tokenizer's own chat template, which is a "
                      "different prompt format",
                      " or ".join(f"data.template={c}" for c in close) if close
                      else "data.template=<a name from `llmpipe-tools templates`>")


@rule("export-quant-dataset-found", keys=["export.quantization_dataset", "data.dataset_dir"],
      bad=[EXPORT_Q + ["export.quantization_dataset=/no/such/calibration.json"],
           EXPORT_Q + ["export.quantization_dataset=no_such_registered_dataset"],
           EXPORT_Q + ["export.quantization_dataset=demo_sft"]],
      good=[EXPORT_Q + ["export.quantization_dataset=demo_pt"], ["export.dir=/tmp/llmpipe-export"]],
      env={"available_packages": frozenset({"gptqmodel", "optimum"})})
def quant_dataset_found(cfg, env):
    """The calibration dataset is a registered name or an existing file (read before any model is loaded)."""
    name = get(cfg, "export.quantization_dataset")
    if get(cfg, "export.quantization_bit") is None or not name:
        return
    try:
        spec = registry.find_dataset(str(name), get(cfg, "data.dataset_dir"))
    except (DataError, ValueError) as e:   # ValueError: a file whose first record is not valid JSON
        yield problem("export-quant-dataset-found", "export.quantization_dataset", name, str(e),
                      "a usable dataset", "fix the dataset_info.json entry or name another dataset")
        return
    if spec is None:
        yield problem("export-quant-dataset-found", "export.quantization_dataset", name,
                      "no dataset of this name in dataset_info.json (data.dataset_dir or bundled), and no such file",
                      "a dataset name, or a .json/.jsonl/.txt/.csv/.parquet file whose rows have a `text` column",
                      "export.quantization_dataset=demo_pt (bundled) or an absolute file path")
        return
    columns = registry.first_columns(spec)
    prompt = (spec.columns or {}).get("prompt")
    if columns is not None and "text" not in columns and not (prompt in columns and prompt != "instruction"):
        yield problem("export-quant-dataset-found", "export.quantization_dataset", name,
                      f"calibration needs plain documents in a `text` column; this dataset's rows have {fmt(sorted(columns))}",
                      "a pre-training style dataset (a `text` column, or columns.prompt mapped to it)",
                      "export.quantization_dataset=demo_pt (bundled) or a file of {\"text\": ...} rows")
