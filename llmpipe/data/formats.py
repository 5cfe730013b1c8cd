"""Row converters: alpaca / sharegpt / openai rows -> llmpipe's internal example.

Internal example::

    {"messages": [{"role": "user"|"assistant"|"function_call"|"tool", "content": str}, ...],
     "system": str | None, "tools": str | None,     # tools: canonical JSON (llmpipe.data.tools)
     "chosen": str, "rejected": str,      # kind == "pairwise" (messages end on a user turn)
     "chosen_role": str, "rejected_role": str,   # pairwise: "assistant", or "function_call" (canonical call)
     "label": bool,                       # kind == "kto" (messages end on the assistant completion)
     "media": dict,                       # only when the dataset declares images/videos/audios columns
     "_row": int}                         # 0-based index of the source row (for reports)

``kind`` is what the rows are for: ``pt`` (any text), ``sft`` (ends on an assistant turn), ``pairwise``,
``kto``, ``prompt`` (ends on a user turn; a trailing assistant turn is dropped). Malformed rows are
never dropped silently: each converter returns a RowReport with counts per reason and the first five
offenders (0-based row index in the source file).
"""
from __future__ import annotations

import json
from typing import Iterable

from llmpipe.data.media import MediaError, check_media
from llmpipe.data.report import MAX_EXAMPLES, BadRow, RowReport  # noqa: F401  (re-exported)
from llmpipe.data.tools import ToolDataError, canonical_call, parse_tools

KINDS = ("pt", "sft", "pairwise", "kto", "prompt")
ANSWER_ROLES = ("assistant", "function_call")
TRUE, FALSE = ("true", "1"), ("false", "0")  # csv cells hold text


class _Bad(Exception):
    pass


def _unicode(value: str, what: str) -> str:
    """``value``, unless it holds a lone surrogate (JSON can write one, ``"\\ud800"``): such text cannot be
    stored (Arrow) or tokenized, so the row is bad instead of failing the whole load later."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad(f"{what} is not valid Unicode text (it holds a lone surrogate, e.g. a JSON escape such as "
                   "\\ud800 without its pair)") from None
    return value


def _text(value, what: str, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise _Bad(f"missing or empty {what}")
        return None
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):  # openai content parts
        parts = [p.get("text", "") for p in value if p.get("type", "text") == "text"]
        if not all(isinstance(t, str) for t in parts):
            raise _Bad(f"{what} has a text part that is not a string")
        value = "".join(parts)
    if not isinstance(value, str):
        raise _Bad(f"{what} is {type(value).__name__}, not a string")
    if required and not value.strip():
        raise _Bad(f"missing or empty {what}")
    return _unicode(value, what)


def _cell(row: dict, col: str, what: str):
    """``row[col]``; a row without that column is bad, and the reason lists the columns it has."""
    if col not in row:
        have = ", ".join(map(repr, list(row)[:8])) + (", ..." if len(row) > 8 else "") or "none"
        raise _Bad(f"no column {col!r} for the {what} (the row's columns: {have})")
    return row[col]


def _tools(row: dict, cols: dict) -> str | None:
    if not cols.get("tools"):
        return None
    try:
        tools = parse_tools(row.get(cols["tools"]))
    except ToolDataError as e:
        raise _Bad(str(e)) from None
    return None if tools is None else _unicode(tools, "tools column")


def _kto_tag(tag) -> bool:
    if isinstance(tag, bool) or (isinstance(tag, int) and tag in (0, 1)):
        return bool(tag)
    if isinstance(tag, str) and tag.strip().lower() in TRUE + FALSE:  # csv cells are strings
        return tag.strip().lower() in TRUE
    raise _Bad(f"kto_tag is {tag!r}, not a boolean")


def _finish(ex: dict, msgs: list[dict], kind: str, row: dict, spec) -> dict:
    """Shape-check ``msgs`` for ``kind`` and attach chosen/rejected/label."""
    cols = spec.columns
    if not msgs:
        raise _Bad("no messages")
    if kind == "pt":
        ex["messages"] = msgs
        return ex
    if kind == "prompt" and msgs[-1]["role"] in ANSWER_ROLES:
        msgs = msgs[:-1]
    if kind in ("pairwise", "prompt"):
        if not msgs or msgs[-1]["role"] in ANSWER_ROLES:
            raise _Bad("prompt must end on a user turn")
    elif msgs[-1]["role"] not in ANSWER_ROLES:
        raise _Bad("conversation must end on an assistant turn")
    if kind == "pairwise":
        if not spec.ranking:
            raise _Bad("dataset is not registered with ranking: true")
        for key in ("chosen", "rejected"):
            ex[key], ex[f"{key}_role"] = _pref(_cell(row, cols.get(key, key), key), key, spec)
    if kind == "kto":
        ex["label"] = _kto_tag(_cell(row, cols.get("kto_tag", "kto_tag"), "kto_tag"))
    ex["messages"] = msgs
    return ex


def _pref(value, key: str, spec) -> tuple[str, str]:
    """(text, role) of a chosen/rejected answer; a tool call (the function tag) becomes a canonical call."""
    if isinstance(value, dict):  # sharegpt/openai: a single message
        t = spec.tags or {}
        role = value.get(t.get("role_tag", "role"))
        if role not in (t.get("assistant_tag", "assistant"), t.get("function_tag", "function_call")):
            raise _Bad(f"{key} message has role {role!r}, expected the assistant tag")
        text = _text(value.get(t.get("content_tag", "content")), f"{key} response")
        if role == t.get("function_tag", "function_call"):
            try:
                return _unicode(canonical_call(text), f"{key} response"), "function_call"
            except ToolDataError as e:
                raise _Bad(f"{key} response: {e}") from None
        return text, "assistant"
    return _text(value, f"{key} response"), "assistant"


def _maybe_json(value, what: str):
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):  # csv cells hold JSON text
        try:
            return json.loads(value)
        except ValueError as e:
            raise _Bad(f"{what} is not valid JSON ({e.msg})") from None
    return value


def _alpaca(row: dict, spec, kind: str) -> dict:
    c = spec.columns
    pc = c.get("prompt", "instruction")
    prompt = _text(_cell(row, pc, "prompt"), f"prompt (column {pc!r})")
    query = _text(row.get(c["query"]), "query", required=False) if c.get("query") else None
    msgs: list[dict] = []
    hist = _maybe_json(row.get(c["history"]), "history") if c.get("history") else None
    if hist:
        if not isinstance(hist, list) or not all(isinstance(t, (list, tuple)) and len(t) == 2 for t in hist):
            raise _Bad("history must be a list of [prompt, response] pairs")
        for q, a in hist:
            msgs += [{"role": "user", "content": _text(q, "history prompt")},
                     {"role": "assistant", "content": _text(a, "history response")}]
    msgs.append({"role": "user", "content": prompt + ("\n" + query if query else "")})
    if kind in ("sft", "kto") or (kind == "pt" and c.get("response") and row.get(c["response"])):
        rc = c.get("response", "output")
        msgs.append({"role": "assistant", "content": _text(_cell(row, rc, "response"), f"response (column {rc!r})")})
    ex = {"system": _text(row.get(c["system"]), "system", False) if c.get("system") else None,
          "tools": _tools(row, c)}
    return _finish(ex, msgs, kind, row, spec)


def _openai_calls(m: dict, i: int, ct: str) -> str:
    text = _text(m.get(ct), f"content of message {i}", required=False)
    try:
        return _unicode(canonical_call(m["tool_calls"], text), f"tool_calls of message {i}")
    except ToolDataError as e:
        raise _Bad(f"message {i}: {e}") from None


def _chat(row: dict, spec, kind: str) -> dict:
    c, t = spec.columns, spec.tags
    col = c.get("messages", "messages")
    raw = _maybe_json(row.get(col), f"column {col!r}")
    if not isinstance(raw, list):
        raise _Bad(f"column {col!r} is {'missing' if raw is None else type(raw).__name__}, not a list of messages")
    rt, ct = t.get("role_tag", "role"), t.get("content_tag", "content")
    user_like = {t.get("user_tag", "user"): "user", t.get("observation_tag", "tool"): "tool"}
    asst_like = {t.get("assistant_tag", "assistant"): "assistant", t.get("function_tag", "function_call"): "function_call"}
    system = _text(row.get(c["system"]), "system", False) if c.get("system") else None
    if raw and isinstance(raw[0], dict) and raw[0].get(rt) == t.get("system_tag", "system"):
        system, raw = _text(raw[0].get(ct), "system message", False), raw[1:]
    msgs = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or rt not in m:
            raise _Bad(f"message {i} has no {rt!r} key")
        role = m[rt]
        if not isinstance(role, str):
            raise _Bad(f"message {i} has a {rt!r} of type {type(role).__name__}, not a role name")
        expect, other = (user_like, asst_like) if i % 2 == 0 else (asst_like, user_like)
        if role not in expect:
            where = "an odd" if i % 2 == 0 else "an even"
            raise _Bad(f"message {i} has role {role!r} at {where} position"
                       if role in other else f"message {i} has unknown role {role!r}")
        role = expect[role]
        if role == "assistant" and m.get("tool_calls"):  # openai: an assistant turn that calls tools
            msgs.append({"role": "function_call", "content": _openai_calls(m, i, ct)})
            continue
        content = _text(m.get(ct), f"content of message {i}")
        if role == "function_call":
            try:
                content = _unicode(canonical_call(content), f"content of message {i}")
            except ToolDataError as e:
                raise _Bad(f"message {i}: {e}") from None
        msgs.append({"role": role, "content": content})
    ex = {"system": system, "tools": _tools(row, c)}
    return _finish(ex, msgs, kind, row, spec)


CONVERTERS = {"alpaca": _alpaca, "sharegpt": _chat, "openai": _chat}


def convert_row(row, spec, kind: str, index: int, media_root=None) -> dict:
    """One internal example, or ``_Bad`` with the reason."""
    if isinstance(row, BadRow):
        raise _Bad(row.reason)
    if not isinstance(row, dict):
        raise _Bad(f"row is {type(row).__name__}, not an object")
    ex = CONVERTERS[spec.formatting](row, spec, kind)
    if any(spec.columns.get(k) for k in ("images", "videos", "audios")):
        try:
            media = check_media(row, spec, ex["messages"], media_root)
        except MediaError as e:
            raise _Bad(str(e)) from None
        if media:
            ex["media"] = media
    ex["_row"] = index
    return ex


def convert_rows(rows: Iterable, spec, kind: str, indices: Iterable[int] | None = None, media_root=None
                 ) -> tuple[list[dict], RowReport]:
    """Convert raw rows of dataset ``spec`` for ``kind``; returns (examples, RowReport)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; allowed: {KINDS}")
    report, out = RowReport(spec.name), []
    rows = list(rows)
    idx = list(indices) if indices is not None else range(len(rows))
    for i, row in zip(idx, rows):
        report.total += 1
        try:
            out.append(convert_row(row, spec, kind, i, media_root))
        except _Bad as e:
            report.bad(i, str(e))
    report.kept = len(out)
    return out, report


def convert_alpaca(rows, spec, kind="sft", indices=None):
    return convert_rows(rows, spec if spec.formatting == "alpaca" else _as(spec, "alpaca"), kind, indices)


def convert_sharegpt(rows, spec, kind="sft", indices=None):
    return convert_rows(rows, spec if spec.formatting == "sharegpt" else _as(spec, "sharegpt"), kind, indices)


def convert_openai(rows, spec, kind="sft", indices=None):
    return convert_rows(rows, spec if spec.formatting == "openai" else _as(spec, "openai"), kind, indices)


def _as(spec, fmt):
    from dataclasses import replace

    return replace(spec, formatting=fmt)
