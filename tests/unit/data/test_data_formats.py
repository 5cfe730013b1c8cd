"""alpaca / sharegpt / openai converters, column and tag remapping, bad-row reports, empty datasets."""
from __future__ import annotations

import json

import pytest

from llmpipe.data.errors import DataError
from llmpipe.data.formats import convert_rows
from llmpipe.data.registry import find_dataset


def _spec(tmp_path, entry: dict, rows, name="d"):
    fname = entry.setdefault("file_name", f"{name}.json")
    (tmp_path / fname).write_text(json.dumps(rows) if fname.endswith(".json") else rows)
    info_path = tmp_path / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[name] = entry
    info_path.write_text(json.dumps(info))
    return find_dataset(name, tmp_path)


def _rows(spec, kind="sft"):
    from llmpipe.data.loader import read_rows

    return convert_rows(read_rows(spec), spec, kind)


def test_alpaca_default_columns_system_and_history(tmp_path):
    spec = _spec(tmp_path, {"columns": {"prompt": "instruction", "query": "input", "response": "output",
                                        "system": "system", "history": "history"}},
                 [{"instruction": "Add.", "input": "one plus one", "output": "two", "system": "Be brief.",
                   "history": [["hi", "hello"]]}])
    (ex,), rep = _rows(spec)
    assert ex["system"] == "Be brief." and ex["tools"] is None and ex["_row"] == 0
    assert ex["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                              {"role": "user", "content": "Add.\none plus one"},
                              {"role": "assistant", "content": "two"}]
    assert (rep.total, rep.kept, rep.dropped) == (1, 1, 0)


def test_alpaca_remapped_columns(tmp_path):
    spec = _spec(tmp_path, {"columns": {"prompt": "q", "response": "a", "system": "sys", "tools": "fns"}},
                 [{"q": "Why?", "a": "Because.", "sys": "S", "fns": [{"name": "f"}]}])
    (ex,), _ = _rows(spec)
    assert ex["messages"][-1] == {"role": "assistant", "content": "Because."} and ex["system"] == "S"
    assert json.loads(ex["tools"]) == [{"name": "f"}]  # kept as given: the tool formats write it as LF does


def test_sharegpt_custom_tags_and_leading_system(tmp_path):
    tags = {"role_tag": "role", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot",
            "system_tag": "sys", "observation_tag": "obs", "function_tag": "call"}
    conv = [{"role": "sys", "text": "from conversation"}, {"role": "me", "text": "q1"}, {"role": "call", "text": '{"name": "f", "arguments": {}}'},
            {"role": "obs", "text": "42"}, {"role": "bot", "text": "a1"}]
    spec = _spec(tmp_path, {"formatting": "sharegpt", "columns": {"messages": "chat", "system": "system"},
                            "tags": tags}, [{"chat": conv, "system": "from column"}])
    (ex,), _ = _rows(spec)
    assert ex["system"] == "from conversation"
    assert [m["role"] for m in ex["messages"]] == ["user", "function_call", "tool", "assistant"]


def test_openai_format(tmp_path):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "yo"}]
    spec = _spec(tmp_path, {"formatting": "openai"}, [{"messages": msgs}])
    (ex,), _ = _rows(spec)
    assert ex["system"] == "S" and ex["messages"] == [{"role": "user", "content": "hi"},
                                                        {"role": "assistant", "content": "yo"}]


def test_ranking_alpaca_and_sharegpt(tmp_path):
    spec = _spec(tmp_path, {"ranking": True, "columns": {"prompt": "instruction", "chosen": "c", "rejected": "r"}},
                 [{"instruction": "q", "c": "good", "r": "bad"}])
    (ex,), _ = _rows(spec, "pairwise")
    assert (ex["chosen"], ex["rejected"], ex["messages"][-1]["role"]) == ("good", "bad", "user")
    spec = _spec(tmp_path, {"formatting": "sharegpt", "ranking": True,
                            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
                 [{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "good"},
                   "rejected": {"from": "gpt", "value": "bad"}},
                  {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "human", "value": "x"},
                   "rejected": {"from": "gpt", "value": "bad"}}], name="sg")
    out, rep = _rows(spec, "pairwise")
    assert len(out) == 1 and out[0]["chosen"] == "good"
    assert rep.examples == [{"row": 1, "reason": "chosen message has role 'human', expected the assistant tag"}]


def test_kto_labels(tmp_path):
    spec = _spec(tmp_path, {"columns": {"prompt": "instruction", "response": "output", "kto_tag": "kto_tag"}},
                 [{"instruction": "q", "output": "a", "kto_tag": True},
                  {"instruction": "q", "output": "b", "kto_tag": False},
                  {"instruction": "q", "output": "c", "kto_tag": "yes"}])
    out, rep = _rows(spec, "kto")
    assert [e["label"] for e in out] == [True, False]
    assert rep.reasons == {"kto_tag is 'yes', not a boolean": 1}
    out, rep = convert_rows([{"instruction": "q", "output": "a", "kto_tag": "false"}], spec, "kto")
    assert out[0]["label"] is False  # csv cells are text


def test_bundled_demo_sets_convert_cleanly():
    for name, kind, n in [("demo_sft", "sft", 600), ("demo_sft_eval", "sft", 100), ("demo_sft_sharegpt", "sft", 200),
                          ("demo_sft_zh", "sft", 200), ("demo_pt", "pt", 400), ("demo_pref", "pairwise", 400),
                          ("demo_kto", "kto", 400), ("demo_tools", "sft", 300), ("demo_tools_eval", "sft", 60)]:
        out, rep = _rows(find_dataset(name, None), kind)
        assert (len(out), rep.dropped) == (n, 0), (name, rep.summary())


def test_malformed_rows_reported_with_row_numbers(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},  # ok
            {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},  # order
            {"conversations": "not a list"},
            {"conversations": [{"from": "human", "value": "q"}]},  # ends on user
            {"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ""}]},
            {"other": 1},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]  # ok
    text = "\n".join(json.dumps(r) for r in rows[:3]) + "\n{broken json\n" + "\n".join(json.dumps(r) for r in rows[3:])
    spec = _spec(tmp_path, {"formatting": "sharegpt", "file_name": "d.jsonl"}, text + "\n")
    out, rep = _rows(spec)
    assert [e["_row"] for e in out] == [0, 8]
    assert (rep.total, rep.kept, rep.dropped) == (9, 2, 7)
    assert rep.examples == [
        {"row": 1, "reason": "message 0 has role 'gpt' at an odd position"},
        {"row": 2, "reason": "column 'conversations' is str, not a list of messages"},
        {"row": 3, "reason": rep.examples[2]["reason"]},
        {"row": 4, "reason": "conversation must end on an assistant turn"},
        {"row": 5, "reason": "message 1 has unknown role 'robot'"},
    ]
    assert rep.examples[2]["reason"].startswith("line 4 is not valid JSON")
    assert rep.reasons["missing or empty content of message 1"] == 1
    assert rep.reasons["column 'conversations' is missing, not a list of messages"] == 1
    summary = rep.summary()
    assert "2/9 rows kept, 7 dropped" in summary and "e.g. row 1:" in summary
    assert rep.to_dict()["dropped"] == 7


def test_alpaca_missing_response_reported(tmp_path):
    spec = _spec(tmp_path, {}, [{"instruction": "q"}, {"instruction": "", "output": "a"}, {"instruction": 3, "output": "a"}])
    out, rep = _rows(spec)
    assert out == []
    assert [e["row"] for e in rep.examples] == [0, 1, 2]
    assert rep.examples[0]["reason"] == "no column 'output' for the response (the row's columns: 'instruction')"
    assert rep.examples[1]["reason"] == "missing or empty prompt (column 'instruction')"
    assert "int, not a string" in rep.examples[2]["reason"]


def _opts(tmp_path, stage="sft"):
    from llmpipe.data.options import DataOptions

    return DataOptions(stage=stage, dataset_dir=str(tmp_path), template="chatml", cutoff_len=64, seed=1)


def test_empty_dataset_is_an_error_naming_it(tmp_path):
    from llmpipe.data.loader import convert_dataset, resolve_spec

    spec = _spec(tmp_path, {}, [{"instruction": "q"}, {"instruction": "q2"}], name="hollow")
    with pytest.raises(DataError) as e:
        convert_dataset(spec, _opts(tmp_path), "train")
    assert "'hollow'" in str(e.value) and "0/2 rows kept" in str(e.value)
    with pytest.raises(DataError, match="'nothing_here' is not in"):
        resolve_spec("nothing_here", _opts(tmp_path))


def test_stage_and_dataset_kind_must_match(tmp_path):
    from llmpipe.data.loader import resolve_spec

    with pytest.raises(DataError, match="ranking: true"):
        resolve_spec("demo_pref", _opts(tmp_path, "sft"))
    with pytest.raises(DataError, match="not a preference dataset"):
        resolve_spec("demo_sft", _opts(tmp_path, "dpo"))
    with pytest.raises(DataError, match="no kto_tag column"):
        resolve_spec("demo_sft", _opts(tmp_path, "kto"))
