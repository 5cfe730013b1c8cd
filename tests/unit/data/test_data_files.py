"""Datasets from files of every supported type, by registry name and by direct path, and bad files of
several kinds: each bad row counted and reported with its row number, an unusable dataset an error
naming it. Hub datasets: a clear error offline or when the hub cannot be reached."""
from __future__ import annotations

import json
import types

import pytest

from llmpipe.data.errors import DataError
from llmpipe.data.loader import build_datasets
from llmpipe.data.options import DataOptions

GOOD = [{"instruction": f"Say {w}.", "output": w} for w in ("red", "blue", "green", "apple", "stone", "river")]


@pytest.fixture(scope="module")
def tok():
    from llmpipe.models.tiny import build_tokenizer

    return build_tokenizer("builtin:tiny")


def opts(tmp_path, dataset, stage="sft", **kw) -> DataOptions:
    kw = {"cutoff_len": 64, "packing": stage == "pt", **kw}
    return DataOptions(stage=stage, dataset=tuple(dataset.split(",")), dataset_dir=str(tmp_path), seed=0, **kw)


def register(tmp_path, **entries):
    (tmp_path / "dataset_info.json").write_text(json.dumps(entries))


def report_of(bundle, name):
    return next(r for r in bundle.report.datasets if r.dataset == name)


def test_every_file_type_by_direct_path(tmp_path, tok):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.json").write_text(json.dumps(GOOD))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GOOD))
    (tmp_path / "c.csv").write_text("instruction,output\n" + "".join(f"{r['instruction']},{r['output']}\n" for r in GOOD))
    pq.write_table(pa.Table.from_pylist(GOOD), tmp_path / "d.parquet")
    (tmp_path / "folder").mkdir()
    for i in range(3):
        (tmp_path / "folder" / f"part{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GOOD[2 * i:2 * i + 2]))
    (tmp_path / "e.txt").write_text("one line of text\nanother line\n\n")
    first = None
    for name in ("a.json", "b.jsonl", "c.csv", "d.parquet", "folder"):
        b = build_datasets(opts(tmp_path, str(tmp_path / name)), tok)
        assert len(b.train) == 6, name
        first = first or b.train["input_ids"]
        assert b.train["input_ids"] == first, name  # same rows whatever the file type
    b = build_datasets(opts(tmp_path, "e.txt", stage="pt"), tok)  # relative to data.dataset_dir
    assert report_of(b, "e.txt").kept == 2


def test_registry_name_with_remapped_columns_system_and_tools(tmp_path, tok):
    rows = [{"q": "What is the weather?", "a": "Sunny.", "sys": "Be brief.",
             "fns": json.dumps([{"name": "weather", "description": "Weather now"}])}]
    (tmp_path / "mine.json").write_text(json.dumps(rows))
    register(tmp_path, mine={"file_name": "mine.json", "columns": {"prompt": "q", "response": "a", "system": "sys",
                                                                    "tools": "fns"}})
    b = build_datasets(opts(tmp_path, "mine", cutoff_len=512, tool_format="default"), tok)
    text = tok.decode(b.train[0]["input_ids"])
    assert "Be brief.You have access" in text and "> Tool Name: weather\nTool Description: Weather now" in text
    assert "Sunny." in text


def test_broken_json_array_is_an_error_naming_dataset_and_place(tmp_path, tok):
    (tmp_path / "broken.json").write_text('[{"instruction": "a", "output": "b"},\n {"instruction": "c" "output": 1}]')
    register(tmp_path, broken={"file_name": "broken.json"})
    with pytest.raises(DataError, match=r"dataset 'broken': .*broken.json is not valid JSON .*line 2"):
        build_datasets(opts(tmp_path, "broken"), tok)


def test_broken_jsonl_lines_are_bad_rows(tmp_path, tok):
    lines = [json.dumps(GOOD[0]), "{not json", json.dumps(GOOD[1]), '{"instruction": "x", "output": ', "[1, 2]"]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    register(tmp_path, d={"file_name": "d.jsonl"})
    rep = report_of(build_datasets(opts(tmp_path, "d"), tok), "d")
    assert (rep.total, rep.kept, rep.dropped) == (5, 2, 3)
    assert [e["row"] for e in rep.examples] == [1, 3, 4]
    assert rep.examples[0]["reason"].startswith("line 2 is not valid JSON")
    assert rep.examples[2]["reason"] == "row is list, not an object"


def test_bytes_that_are_not_utf8(tmp_path, tok):
    """A JSONL line that is not UTF-8 is a bad row; a JSON array, CSV or text file that is not UTF-8 is an
    error naming the dataset, file and line (it used to escape as a UnicodeDecodeError traceback)."""
    lines = [json.dumps(r).encode() for r in GOOD[:3]] + [b"\x80\x81 not text", json.dumps(GOOD[3]).encode()]
    (tmp_path / "d.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    rep = report_of(build_datasets(opts(tmp_path, str(tmp_path / "d.jsonl")), tok), str(tmp_path / "d.jsonl"))
    assert (rep.total, rep.kept) == (5, 4)
    assert rep.examples == [{"row": 3, "reason": "line 4 is not UTF-8 text"}]
    (tmp_path / "g.jsonl").write_bytes(bytes(range(256)) * 4)  # nothing but garbage: no usable row
    register(tmp_path, g={"file_name": "g.jsonl"})
    with pytest.raises(DataError, match=r"dataset 'g' has no usable rows (.|\n)*not UTF-8 text"):
        build_datasets(opts(tmp_path, "g"), tok)
    with pytest.raises(DataError, match=r"g.jsonl: cannot tell its format from columns \[\]"):  # by path
        build_datasets(opts(tmp_path, str(tmp_path / "g.jsonl")), tok)
    (tmp_path / "c.csv").write_bytes(b"instruction,output\nSay a.,a\nSay \xfe.,b\nSay c.,c\n")
    rep = report_of(build_datasets(opts(tmp_path, str(tmp_path / "c.csv")), tok), str(tmp_path / "c.csv"))
    assert (rep.total, rep.kept, rep.examples) == (3, 2, [{"row": 1, "reason": "csv line 3 is not UTF-8 text"}])
    (tmp_path / "a.json").write_bytes(b'[{"instruction": "a", "output": "b"},\n {"instruction": "\xff"}]')
    with pytest.raises(DataError, match=r"dataset '.*a.json': .*a.json is not UTF-8 text \(line 2"):
        build_datasets(opts(tmp_path, str(tmp_path / "a.json")), tok)


def test_wrong_columns_make_the_dataset_empty_which_is_an_error(tmp_path, tok):
    (tmp_path / "qa.json").write_text(json.dumps([{"question": "q", "answer": "a"}] * 3))
    register(tmp_path, qa={"file_name": "qa.json"})  # alpaca defaults: instruction/output
    with pytest.raises(DataError) as e:
        build_datasets(opts(tmp_path, "qa"), tok)
    msg = str(e.value)
    assert "dataset 'qa' has no usable rows" in msg and "0/3 rows kept" in msg
    assert "no column 'instruction' for the prompt (the row's columns: 'question', 'answer')" in msg
    assert "e.g. row 0:" in msg


def test_wrong_role_order_reported(tmp_path, tok):
    conv = lambda *roles: {"messages": [{"role": r, "content": f"{r} text"} for r in roles]}  # noqa: E731
    rows = [conv("user", "assistant"), conv("assistant", "user"), conv("user", "user"),
            conv("system", "user", "assistant"), conv("user", "assistant", "user")]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    b = build_datasets(opts(tmp_path, str(tmp_path / "chat.jsonl")), tok)
    rep = b.report.datasets[0]
    assert (rep.kept, rep.dropped) == (2, 3)
    assert rep.examples == [{"row": 1, "reason": "message 0 has role 'assistant' at an odd position"},
                            {"row": 2, "reason": "message 1 has role 'user' at an even position"},
                            {"row": 4, "reason": "conversation must end on an assistant turn"}]
    assert "system text" in tok.decode(b.train[1]["input_ids"])


@pytest.mark.parametrize("fname,content", [("e.json", ""), ("e.json", "[]"), ("e.jsonl", "\n\n"),
                                           ("e.csv", "instruction,output\n"), ("e.csv", "")])
def test_empty_file_is_an_error_naming_the_dataset(tmp_path, tok, fname, content):
    (tmp_path / fname).write_text(content)
    register(tmp_path, empty={"file_name": fname})
    with pytest.raises(DataError, match=r"dataset 'empty' is empty: .*holds no rows"):
        build_datasets(opts(tmp_path, "empty"), tok)


def test_csv_with_missing_fields(tmp_path, tok):
    text = "instruction,input,output\nSay red.,,red\nSay blue.,blue\n\"Say, green.\",,green\nSay x.,,\n"
    (tmp_path / "d.csv").write_text(text)
    rep = report_of(build_datasets(opts(tmp_path, str(tmp_path / "d.csv")), tok), str(tmp_path / "d.csv"))
    assert (rep.total, rep.kept) == (4, 2)
    assert rep.examples == [{"row": 1, "reason": "csv line 3 has 2 fields, the header has 3"},
                            {"row": 3, "reason": "missing or empty response (column 'output')"}]


def test_every_dropped_row_is_counted_in_the_report(tmp_path, tok):
    rows = [{"instruction": "x " * 200, "output": "y " * 200}] + GOOD  # a prompt and answer too long for 64
    (tmp_path / "d.json").write_text(json.dumps(rows + [{"instruction": "y " * 300, "output": "z"}]))
    b = build_datasets(opts(tmp_path, str(tmp_path / "d.json")), tok)
    rep = b.report.datasets[0]
    assert rep.total == rep.kept + rep.dropped == 8 and len(b.train) == rep.kept
    assert rep.notes["prompt truncated to fit cutoff_len"] >= 1
    assert b.report.to_dict()["datasets"][0]["dropped"] == rep.dropped


def test_media_counts_and_files_are_checked_then_refused_for_a_text_model(tmp_path, tok):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"png")
    rows = [{"messages": [{"role": "user", "content": "<image>What is it?"}, {"role": "assistant", "content": "A."}],
             "images": ["img/a.png"]},
            {"messages": [{"role": "user", "content": "<image><image>Two?"}, {"role": "assistant", "content": "B."}],
             "images": ["img/a.png"]},
            {"messages": [{"role": "user", "content": "<image>Where?"}, {"role": "assistant", "content": "C."}],
             "images": ["img/missing.png"]}]
    (tmp_path / "mm.json").write_text(json.dumps(rows))
    register(tmp_path, mm={"file_name": "mm.json", "formatting": "openai",
                           "columns": {"messages": "messages", "images": "images"}})
    with pytest.raises(DataError) as e:
        build_datasets(opts(tmp_path, "mm"), tok)
    msg = str(e.value)
    assert "1 rows carry images/videos/audios" in msg and "the model is text-only" in msg
    assert "row 1: 2 <image> placeholders but 1 image in column 'images'" in msg
    assert "row 2: image file 'img/missing.png' not found" in msg


def test_hub_dataset_offline_or_unreachable_is_a_clear_error(tmp_path, tok, monkeypatch):
    register(tmp_path, hubby={"hf_hub_url": "org/data"}, scope={"ms_hub_url": "org/data"})
    for var in ("LLMPIPE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"'hubby' is the hub dataset 'org/data', but this run is offline \(HF_HUB_OFFLINE"):
        build_datasets(opts(tmp_path, "hubby"), tok)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(DataError, match=r"the hub \(127.0.0.1:9\) cannot be reached"):
        build_datasets(opts(tmp_path, "hubby"), tok)
    with pytest.raises(DataError, match="ModelScope sources .* are not supported"):
        build_datasets(opts(tmp_path, "scope"), tok)


def test_names_are_checked_before_any_work(tmp_path):
    cfg = types.SimpleNamespace(data=types.SimpleNamespace(dataset=["demo_sft"], eval_dataset=["nope"], dataset_dir="x"),
                                train=types.SimpleNamespace(stage="sft", seed=0))
    with pytest.raises(DataError, match="'nope' is not in"):
        build_datasets(cfg, tokenizer=None)  # fails before the tokenizer is touched


def test_preflight_names_the_dataset_whose_file_cannot_be_used(tmp_path, hydra_compose):
    """A registered file that is missing, or a path that cannot be read, is a problem of data.dataset naming
    that dataset (it used to be blamed on data.dataset_dir's registry); the other datasets are still checked."""
    from llmpipe.pipeline.preflight import validate

    (tmp_path / "broken.json").write_text('[{"instruction": "a", "output": "b"}, {"instr')
    register(tmp_path, gone={"file_name": "gone.json"}, ok={"file_name": "broken.json"})
    datasets = f"data.dataset='gone,{tmp_path / 'broken.json'}'"
    _, problems = validate(hydra_compose(f"data.dataset_dir={tmp_path}", datasets, "data.eval_dataset=nope"))
    mine = {(p.key, p.value): p.render() for p in problems if p.rule == "data-dataset-registered"}
    assert set(mine) == {("data.dataset", "gone"), ("data.dataset", str(tmp_path / "broken.json")),
                         ("data.eval_dataset", "nope")}, mine
    assert "gone.json does not exist" in mine[("data.dataset", "gone")]
    assert "is not valid JSON" in mine[("data.dataset", str(tmp_path / "broken.json"))]


def test_corrupt_parquet_and_an_unclosed_csv_quote(tmp_path, tok):
    """A corrupt parquet file raised pyarrow's ArrowInvalid (a traceback) instead of a DataError; a CSV quote
    that is never closed swallows the lines after it, and the report now says which lines and why."""
    (tmp_path / "c.parquet").write_bytes(b"PAR1garbagePAR1")
    register(tmp_path, cp={"file_name": "c.parquet"})
    with pytest.raises(DataError, match=r"dataset 'cp': cannot read parquet file .*c.parquet"):
        build_datasets(opts(tmp_path, "cp"), tok)
    with pytest.raises(DataError, match=r"cannot read parquet file .*c.parquet"):   # by path: already in pre-flight
        build_datasets(opts(tmp_path, str(tmp_path / "c.parquet")), tok)
    (tmp_path / "q.csv").write_text('instruction,output\nSay a.,a\n"Say b.,b\nSay c.,c\n')
    rep = report_of(build_datasets(opts(tmp_path, str(tmp_path / "q.csv")), tok), str(tmp_path / "q.csv"))
    assert (rep.total, rep.kept) == (2, 1)
    reason = "csv lines 3-4 (one record) have 1 fields, the header has 2 (a quote that is not closed?)"
    assert rep.examples == [{"row": 1, "reason": reason}]
