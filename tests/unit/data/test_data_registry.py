"""Dataset registry lookup and the named chat templates."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmpipe.data import registry, templates
from llmpipe.data.errors import DataError


@pytest.fixture(scope="module")
def tok():
    from llmpipe.models.tiny import build_tokenizer

    return build_tokenizer("builtin:tiny")


def test_data_modules_import_no_torch():
    code = ("import sys, llmpipe.data.registry, llmpipe.data.templates, llmpipe.data.formats, "
            "llmpipe.data.processors, llmpipe.data.tools, llmpipe.data.tokfacts, llmpipe.data.options, "
            "llmpipe.data.packing, llmpipe.data.sources, llmpipe.models.tiny, llmpipe.data.rules, llmpipe.models.rules; "
            "print(sorted(m for m in ('torch', 'datasets', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bundled_registry_is_found_anywhere(tmp_path):
    names = registry.known_names(tmp_path / "nowhere")
    for n in ("demo_sft", "demo_sft_eval", "demo_sft_sharegpt", "demo_sft_zh", "demo_sft_zh_eval", "demo_pt",
              "demo_pt_eval", "demo_pref", "demo_pref_eval", "demo_kto", "demo_kto_eval"):
        assert n in names
    spec = registry.find_dataset("demo_pref", tmp_path / "nowhere")
    assert spec.registry == "bundled" and spec.ranking and spec.formatting == "alpaca"
    assert registry.find_dataset("demo_kto", None).kto
    assert registry.find_dataset("demo_sft_sharegpt", None).formatting == "sharegpt"
    assert registry.find_dataset("no_such_dataset", tmp_path) is None


def test_user_registry_shadows_bundled(tmp_path):
    (tmp_path / "mine.jsonl").write_text(json.dumps({"q": "hi", "a": "yo"}) + "\n")
    info = {"demo_sft": {"file_name": "mine.jsonl", "columns": {"prompt": "q", "response": "a"}},
            "hubby": {"hf_hub_url": "org/data", "split": "test", "revision": "v1"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    spec = registry.find_dataset("demo_sft", tmp_path)
    assert spec.source == str((tmp_path / "mine.jsonl").resolve()) and spec.columns["prompt"] == "q"
    assert spec.file_type == "json"
    hub = registry.find_dataset("hubby", tmp_path)
    assert (hub.source_kind, hub.source, hub.split) == ("hub", "org/data", "test")
    assert "hub" not in registry.data_identity(hub) and registry.data_identity(hub).startswith("sha256:")
    assert {"demo_sft", "hubby", "demo_pt"} <= set(registry.known_names(tmp_path))


@pytest.mark.parametrize("entry,match", [
    ({"file_name": "missing.json"}, "does not exist"),
    ({"file_name": "x.json", "formatting": "yaml"}, "formatting='yaml'"),
    ({"file_name": "x.json", "columns": {"bogus": "c"}}, "unknown column keys"),
    ({"columns": {}}, "needs one of file_name"),
])
def test_bad_registry_entries(tmp_path, entry, match):
    (tmp_path / "x.json").write_text("[]")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": entry}))
    with pytest.raises(DataError, match=match):
        registry.find_dataset("d", tmp_path)


def test_direct_paths_are_sniffed(tmp_path):
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "a"}]}) + "\n")
    (tmp_path / "sg.json").write_text(json.dumps([{"conversations": [{"from": "human", "value": "a"}]}]))
    (tmp_path / "pref.csv").write_text("instruction,chosen,rejected\nq,a,b\n")
    (tmp_path / "pt.txt").write_text("some text\n")
    assert registry.find_dataset(str(tmp_path / "chat.jsonl"), None).formatting == "openai"
    sg = registry.find_dataset("sg.json", tmp_path)  # relative to dataset_dir
    assert sg.formatting == "sharegpt" and sg.tags["user_tag"] == "human"
    pref = registry.find_dataset(str(tmp_path / "pref.csv"), None)
    assert pref.ranking and pref.file_type == "csv" and pref.columns["chosen"] == "chosen"
    assert registry.find_dataset(str(tmp_path / "pt.txt"), None).columns["prompt"] == "text"
    (tmp_path / "odd.json").write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(DataError, match="cannot tell its format"):
        registry.find_dataset(str(tmp_path / "odd.json"), None)


def test_data_identity_follows_bytes_and_spec(tmp_path):
    f = tmp_path / "d.json"
    f.write_text(json.dumps([{"instruction": "a", "output": "b"}]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.json"},
                                                            "e": {"file_name": "d.json", "ranking": True}}))
    a = registry.data_identity(registry.find_dataset("d", tmp_path))
    assert a == registry.data_identity(registry.find_dataset("d", tmp_path))
    assert a != registry.data_identity(registry.find_dataset("e", tmp_path))
    f.write_text(json.dumps([{"instruction": "a", "output": "c"}]))
    assert a != registry.data_identity(registry.find_dataset("d", tmp_path))


def test_template_names_and_unknown(tok):
    assert {"qwen", "llama3", "chatml", "mistral", "gemma", "default"} <= set(templates.template_names())
    with pytest.raises(DataError, match="data.template='nope'"):
        templates.apply_template(tok, "nope", None)


@pytest.mark.parametrize("name", ["qwen", "llama3", "chatml", "mistral", "gemma", "default"])
def test_every_template_marks_assistant_turns(tok, name):
    from llmpipe.data.processors import turn_pieces

    text = templates.apply_template(tok, name, "Be exact.")
    assert "{% generation %}" in text and "{% endgeneration %}" in text
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
            {"role": "user", "content": "again"}, {"role": "assistant", "content": "ok"}]
    rendered = tok.apply_chat_template(msgs, tokenize=False)
    assert "Be exact." in rendered
    pieces = turn_pieces(tok, msgs)
    assert "".join(s + t for s, t in pieces) == rendered
    # (LLaMA-Factory's mistral answer slot starts with a space: " yo</s>")
    assert [t.lstrip().startswith(a) for (_, t), a in zip(pieces, ("yo", "ok"))] == [True, True]
    enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    marked = tok.decode([i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m])
    assert "yo" in marked and "ok" in marked and "hi" not in marked and "again" not in marked


def test_check_template_fits(tok):
    assert templates.check_template_fits(tok, "chatml") is None
    assert templates.check_template_fits(tok, "qwen") is None
    msg = templates.check_template_fits(tok, "llama3")
    assert "'<|start_header_id|>'" in msg and "not single tokens" in msg
    assert templates.check_template_fits(tok, "mistral") is None  # [INST] is plain text for Mistral v0.1 too
    assert "'<start_of_turn>'" in templates.check_template_fits(tok, "gemma")
    assert templates.check_template_fits(tok, "llama3", strict=False) is None  # byte-level: encodable


def test_tokenizer_own_template(tok):
    from llmpipe.models.tiny import build_tokenizer

    t = build_tokenizer("builtin:tiny")
    assert templates.apply_template(t, None, None) == t.chat_template
    t.chat_template = None
    with pytest.raises(DataError, match="data.template"):
        templates.apply_template(t, None, None)
    assert "data.template" in templates.check_template_fits(t, None)


def test_template_fit_read_from_tokenizer_files(tmp_path, tok):
    """Pre-flight reads a local (or hub-cached) tokenizer's files, without loading it."""
    from llmpipe.data import tokfacts

    folder = tmp_path / "hub" / "models--org--m" / "snapshots" / "abc"
    tok.save_pretrained(folder)
    (tmp_path / "hub" / "models--org--m" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--m" / "refs" / "main").write_text("abc")
    assert tokfacts.hub_snapshot("org/m", [tmp_path / "hub"]) == folder
    facts = tokfacts.from_folder(folder)
    assert "<|im_start|>" in facts.tokens and facts.eos_token == "<|im_end|>" and facts.has_chat_template

    def problem(name):
        t = templates.TEMPLATES[name]
        return tokfacts.template_problem(facts, name, t.markers, t.needs_eos)

    assert problem("chatml") is None and problem("mistral") is None
    assert "'<|eot_id|>'" in problem("llama3")
    bare = tokfacts.TokenizerFacts("x", frozenset(), None, False)
    assert "no chat template" in tokfacts.template_problem(bare, None, (), False)
    assert "eos_token" in tokfacts.template_problem(bare, "default", (), True)
