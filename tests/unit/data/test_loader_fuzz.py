"""Property-based fuzzing (Hypothesis) of the data loader, format by format: alpaca, sharegpt, openai
messages, preference pairs, kto and pre-training text.

Each example is a dataset of rows: well-formed rows, the same rows mutated (a field missing, null, empty,
blank, of another type, nested junk, a wrong role) and rows that are junk altogether, with unicode (lone
surrogates included: JSON can hold them) and huge strings. The properties:

- ``convert_rows`` (the lowest entry that takes records and a format) never raises: every row is either
  kept or counted in the dataset's bad-row report, with a reason and the first offenders as examples;
- every well-formed row is kept, as the example of its own row index;
- what it keeps has the internal shape the processors rely on, and the processors (tokenization with the
  built-in tiny tokenizer for sft/pt, TRL rows for pairs/kto/prompts) take it without an exception: a row
  they cannot use comes back as a reason, not a crash;
- from a file, ``convert_dataset`` either returns rows or raises a ``DataError`` (a message for the user).
"""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llmpipe.data import processors as P
from llmpipe.data.errors import DataError
from llmpipe.data.formats import ANSWER_ROLES, convert_rows
from llmpipe.data.registry import DEFAULT_COLUMNS, DEFAULT_TAGS, DatasetSpec
from llmpipe.data.report import MAX_EXAMPLES

EXAMPLES = int(os.environ.get("LLMPIPE_FUZZ_EXAMPLES", "150"))   # more, to hunt: LLMPIPE_FUZZ_EXAMPLES=2000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 200, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ----------------------------------------------------------------------------------------------- values
any_char = st.characters(codec=None, exclude_categories=())          # lone surrogates and control characters too
text = st.text(any_char, max_size=40)                                 # junk text
word = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30).map(lambda s: "w" + s)   # good text: valid, never blank
plain = st.text(st.characters(codec="utf-8"), max_size=40)            # good optional text: may be empty
huge = st.integers(2_000, 20_000).map(lambda n: "long text " * (n // 10))
good_text = st.one_of(word, word, word, huge)
blank = st.sampled_from(["", " ", "\n\t ", "\u3000"])
scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text, blank)
junk = st.recursive(scalar, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(text, c, max_size=4)),
                    max_leaves=12)


def spec_for(fmt: str, name: str, columns: dict | None = None, **kw) -> DatasetSpec:
    base = "alpaca" if fmt in ("pref", "kto", "pt") else fmt
    cols = {**DEFAULT_COLUMNS[base], **(columns or {})}
    return DatasetSpec(name=name, source="", formatting=base, columns=cols, tags=dict(DEFAULT_TAGS.get(base, {})),
                       kto="kto_tag" in cols, **kw)


# name -> (spec, kind)
FORMATS = {
    "alpaca": (spec_for("alpaca", "fuzz_alpaca", {"system": "system", "history": "history", "tools": "tools"}),
               "sft"),
    "sharegpt": (spec_for("sharegpt", "fuzz_sharegpt", {"system": "system", "tools": "tools"}), "sft"),
    "openai": (spec_for("openai", "fuzz_openai", {"tools": "tools"}), "sft"),
    "pref": (spec_for("pref", "fuzz_pref", {"chosen": "chosen", "rejected": "rejected"}, ranking=True), "pairwise"),
    "kto": (spec_for("kto", "fuzz_kto", {"kto_tag": "kto_tag"}), "kto"),
    "pt": (spec_for("pt", "fuzz_pt", {"prompt": "text"}), "pt"),
}

# ------------------------------------------------------------------------------------------ good rows
tools = st.lists(st.fixed_dictionaries({"name": word}, optional={"description": plain}), max_size=2)


@st.composite
def alpaca_row(draw):
    row = {"instruction": draw(good_text), "output": draw(good_text)}
    if draw(st.booleans()):
        row["input"] = draw(st.one_of(plain, st.none()))
    if draw(st.booleans()):
        row["system"] = draw(st.one_of(word, st.none(), st.just("")))
    if draw(st.booleans()):
        row["history"] = draw(st.lists(st.tuples(word, word).map(list), max_size=3))
    if draw(st.booleans()):
        row["tools"] = draw(tools)
    return row


def _turns(draw, user: str, assistant: str, role: str, content: str, parts: bool = False) -> list[dict]:
    n = draw(st.integers(1, 3))
    out = []
    for _ in range(n):
        for who in (user, assistant):
            value = draw(good_text)
            if parts and draw(st.booleans()):   # openai content parts
                value = [{"type": "text", "text": value}]
            out.append({role: who, content: value})
    return out


@st.composite
def sharegpt_row(draw):
    conv = _turns(draw, "human", "gpt", "from", "value")
    if draw(st.booleans()):
        conv.insert(0, {"from": "system", "value": draw(word)})
    row = {"conversations": conv}
    if draw(st.booleans()):
        row["system"] = draw(st.one_of(word, st.none()))
    return row


@st.composite
def openai_row(draw):
    msgs = _turns(draw, "user", "assistant", "role", "content", parts=True)
    if draw(st.booleans()):
        msgs.insert(0, {"role": "system", "content": draw(word)})
    row = {"messages": msgs}
    if draw(st.booleans()):
        row["tools"] = draw(tools.map(lambda ts: [{"type": "function", "function": t} for t in ts]))
    return row


@st.composite
def pref_row(draw):
    row = {"instruction": draw(good_text), "chosen": draw(good_text), "rejected": draw(good_text)}
    if draw(st.booleans()):
        row["input"] = draw(plain)
    return row


@st.composite
def kto_row(draw):
    return {"instruction": draw(good_text), "output": draw(good_text),
            "kto_tag": draw(st.sampled_from([True, False, 0, 1, "true", "False", " 1 ", "0"]))}


@st.composite
def pt_row(draw):
    return {"text": draw(good_text)}


GOOD = {"alpaca": alpaca_row(), "sharegpt": sharegpt_row(), "openai": openai_row(), "pref": pref_row(),
        "kto": kto_row(), "pt": pt_row()}
WRONG_ROLES = st.sampled_from(["system", "bot", "", None, 3, "USER", "gpt", "human", "assistant", "user", "tool",
                               "observation", "function_call"])


@st.composite
def mutated(draw, good):
    """A good row with one or more of its fields broken (it may happen to stay good)."""
    row = json.loads(json.dumps(draw(good), ensure_ascii=False))   # a deep copy, as a JSON file gives it
    for _ in range(draw(st.integers(1, 3))):
        if not row:
            break
        key = draw(st.sampled_from(sorted(row)))
        how = draw(st.sampled_from(["delete", "null", "blank", "junk", "rename", "message", "surrogate"]))
        if how == "delete":
            del row[key]
        elif how == "null":
            row[key] = None
        elif how == "blank":
            row[key] = draw(blank)
        elif how == "junk":
            row[key] = draw(junk)
        elif how == "surrogate":   # what a JSON escape "\\udc80" gives
            row[key] = f"{row[key]}\udc80" if isinstance(row[key], str) else [row[key], "\ud800"]
        elif how == "rename":
            row[key + draw(text)] = row.pop(key)
        elif isinstance(row[key], list) and row[key]:   # break one message (or history pair) of a list
            i = draw(st.integers(0, len(row[key]) - 1))
            m = row[key][i]
            if isinstance(m, dict) and m:
                field = draw(st.sampled_from(sorted(m)))
                m[field] = draw(st.one_of(WRONG_ROLES, junk)) if field in ("role", "from") else draw(junk)
            else:
                row[key][i] = draw(junk)
    return row


def dataset(fmt: str):
    good = GOOD[fmt]
    row = st.one_of(good.map(lambda r: ("good", r)), mutated(good).map(lambda r: ("mutated", r)),
                    junk.map(lambda r: ("junk", r)))
    return st.lists(row, min_size=1, max_size=8)


# ----------------------------------------------------------------------------------------------- checks
@pytest.fixture(scope="module")
def tokenizer():
    from llmpipe.models.tiny import build_tokenizer

    return build_tokenizer("builtin:tiny")   # ~2 s: trains the byte-level BPE on the bundled corpus


def check_report(rows: list, examples: list[dict], rep, spec) -> None:
    assert rep.dataset == spec.name
    assert rep.total == len(rows) and rep.kept == len(examples) and rep.dropped == rep.total - rep.kept
    kept = {ex["_row"] for ex in examples}
    assert len(kept) == len(examples)
    dropped = set(range(len(rows))) - kept
    assert len(rep.examples) == min(MAX_EXAMPLES, len(dropped))
    assert all(e["row"] in dropped and isinstance(e["reason"], str) and e["reason"] for e in rep.examples)
    assert all(isinstance(r, str) and r and n > 0 for r, n in rep.reasons.items())
    rep.summary()
    json.dumps(rep.to_dict())


def check_shape(ex: dict, kind: str) -> None:
    msgs = ex["messages"]
    assert isinstance(msgs, list) and msgs
    assert all(m["role"] in ("user", "assistant", "function_call", "tool") and isinstance(m["content"], str)
               for m in msgs)
    assert ex.get("system") is None or isinstance(ex["system"], str)
    assert ex.get("tools") is None or isinstance(json.loads(ex["tools"]), list)
    if kind in ("sft", "kto"):
        assert msgs[-1]["role"] in ANSWER_ROLES
    if kind == "pairwise":
        assert msgs[-1]["role"] not in ANSWER_ROLES
        assert isinstance(ex["chosen"], str) and isinstance(ex["rejected"], str)
    if kind == "kto":
        assert isinstance(ex["label"], bool)


def process(examples: list[dict], kind: str, tokenizer) -> None:
    """The processors take every kept example: trainer rows, or a reason per row; never an exception."""
    if not examples:
        return
    proc = {"default_system": "You are a helpful assistant.", "tool_format": "default"}
    if kind == "pairwise":
        assert len(P.process_pairwise(examples, **proc)) == len(examples)
        assert len(P.process_prompt(examples, **proc)) == len(examples)
    elif kind == "kto":
        assert len(P.process_kto(examples, **proc)) == len(examples)
    else:
        batch = {k: [ex.get(k) for ex in examples] for k in ("messages", "system", "tools", "_row")}
        opts = {"truncate_to": 48} if kind == "pt" else {**proc, "cutoff_len": 48, "train_on_prompt": False,
                                                         "mask_history": False}
        out = P.tokenize_batch(batch, tokenizer=tokenizer, kind=kind, **opts)
        assert out["_row"] == [ex["_row"] for ex in examples]
        for ids, bad in zip(out["input_ids"], out["_bad"]):
            assert (isinstance(bad, str) and bad) if not ids else bad == ""


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_loading_keeps_good_rows_and_reports_the_rest(fmt, tokenizer):
    spec, kind = FORMATS[fmt]

    @FUZZ
    @given(dataset(fmt))
    def run(tagged):
        rows = [r for _, r in tagged]
        examples, rep = convert_rows(rows, spec, kind)   # never raises
        event(f"rows kept: {'some' if examples else 'none'}, dropped: {'some' if rep.dropped else 'none'}")
        check_report(rows, examples, rep, spec)
        kept = {ex["_row"] for ex in examples}
        assert {i for i, (tag, _) in enumerate(tagged) if tag == "good"} <= kept
        assert not {i for i, (tag, r) in enumerate(tagged) if tag == "junk" and not isinstance(r, dict)} & kept
        for ex in examples:
            check_shape(ex, kind)
        process(examples, kind, tokenizer)

    run()


LINE = st.one_of(alpaca_row().map(json.dumps), mutated(alpaca_row()).map(json.dumps), junk.map(json.dumps),
                 text.filter(lambda s: not set(s) & set("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")))


@FUZZ
@given(lines=st.lists(LINE, min_size=1, max_size=8))
def test_a_jsonl_file_loads_or_fails_with_a_message(lines, tmp_path_factory, tokenizer):
    """From a file to tokenized rows (read_rows turns a broken line into a bad row, datasets.map tokenizes):
    the loader returns rows with a consistent report, or a DataError naming the dataset."""
    from llmpipe.data.loader import DataOptions, convert_dataset, prepare_tokenizer, process_dataset

    folder = tmp_path_factory.mktemp("jsonl")
    path = folder / "rows.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    spec = spec_for("alpaca", "fuzz_file", {"system": "system", "history": "history", "tools": "tools"})
    spec.source, spec.file_type = str(path), "json"
    opts = DataOptions(stage="sft", template="chatml", cutoff_len=48)
    try:
        examples, rep = convert_dataset(spec, opts, "train")
        ds = process_dataset(examples, tokenizer, opts, prepare_tokenizer(tokenizer, opts), rep)
        event("tokenized")
    except DataError as e:
        assert "fuzz_file" in str(e)
        return
    assert 0 < len(ds) == rep.kept <= len(examples) <= rep.total == rep.kept + rep.dropped
