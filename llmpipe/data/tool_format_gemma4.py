"""LLaMA-Factory's ``gemma4`` tool format (templates ``gemma4``, ``gemma4n``): Gemma 4's own declaration syntax,
with strings quoted by the ``<|"|>`` token instead of JSON quotes and bare keys.

* Tool text: one ``declaration:NAME{description:<|"|>...<|"|>,parameters:{...}}`` per tool, joined by newlines.
  ``parameters`` (when the tool has any) holds ``properties`` (each property with only its ``description``
  and its ``type`` upper-cased, when given), ``required`` (a list of quoted names) and the upper-cased
  ``type``; a ``response`` schema adds ``response:{description, type}`` (the type only when it is OBJECT).
* Call text: ``<|tool_call>call:NAME{key:value,...}<tool_call|>`` per call, concatenated, argument keys
  sorted; values: strings quoted, ``true``/``false``/``null``, lists ``[a,b]``, objects ``{k:v}`` (keys
  sorted), numbers as Python writes them.
* Reading calls back parses that value syntax (not JSON), so quoted strings may hold any character.
"""
from __future__ import annotations

import json
import re

Q = '<|"|>'
CALL_OPEN = re.compile(r"<\|tool_call>call:([^{\s]+)(?=\{)")
CALL_CLOSE = "<tool_call|>"


def _q(text) -> str:
    return f"{Q}{text}{Q}"


def _properties(props: dict) -> str:
    parts = []
    for name, schema in props.items():
        inner = []
        if schema.get("description"):
            inner.append(f"description:{_q(schema['description'])}")
        if schema.get("type"):
            inner.append(f"type:{_q(str(schema['type']).upper())}")
        parts.append(f"{name}:{{{','.join(inner)}}}")
    return ",".join(parts)


def tools_text(tools: list[dict], date=None) -> str:
    out = []
    for tool in tools:
        text = f"declaration:{tool['name']}{{description:{_q(tool.get('description', ''))}"
        params = tool.get("parameters")
        if params:
            parts = []
            if params.get("properties"):
                parts.append(f"properties:{{{_properties(params['properties'])}}}")
            if params.get("required"):
                parts.append(f"required:[{','.join(_q(r) for r in params['required'])}]")
            if params.get("type"):
                parts.append(f"type:{_q(str(params['type']).upper())}")
            text += f",parameters:{{{','.join(parts)}}}"
        response = tool.get("response")
        if response:
            parts = [f"description:{_q(response['description'])}"] if response.get("description") else []
            if str(response.get("type", "")).upper() == "OBJECT":
                parts.append(f"type:{_q('OBJECT')}")
            text += f",response:{{{','.join(parts)}}}"
        out.append(text + "}")
    return "\n".join(out)


def _value(v) -> str:
    if isinstance(v, str):
        return _q(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_value(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return str(v)


def calls_text(calls: list[dict]) -> str:
    return "".join(f"<|tool_call>call:{c['name']}{_value(dict(c['arguments']))}{CALL_CLOSE}" for c in calls)


class _Bad(ValueError):
    pass


def _parse(s: str, i: int):
    """(value, next index) of the value syntax at ``s[i:]``."""
    if s.startswith(Q, i):
        end = s.find(Q, i + len(Q))
        if end < 0:
            raise _Bad("unclosed string")
        return s[i + len(Q):end], end + len(Q)
    if s.startswith("{", i):
        out, i = {}, i + 1
        while not s.startswith("}", i):
            if s.startswith(Q, i):
                key, i = _parse(s, i)
            else:
                m = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*").match(s, i)
                if not m:
                    raise _Bad("no key")
                key, i = m.group(0), m.end()
            if not s.startswith(":", i):
                raise _Bad("no colon")
            out[key], i = _parse(s, i + 1)
            if s.startswith(",", i):
                i += 1
            elif not s.startswith("}", i):
                raise _Bad("no comma")
        return out, i + 1
    if s.startswith("[", i):
        items, i = [], i + 1
        while not s.startswith("]", i):
            item, i = _parse(s, i)
            items.append(item)
            if s.startswith(",", i):
                i += 1
            elif not s.startswith("]", i):
                raise _Bad("no comma")
        return items, i + 1
    m = re.compile(r"[^,}\]]+").match(s, i)
    if not m:
        raise _Bad("no value")
    token = m.group(0).strip()
    try:
        return json.loads(token), m.end()
    except ValueError:
        return token, m.end()


def extract(text: str):
    """(content before the calls, calls) when ``text`` holds gemma4 calls, else None."""
    calls, first, pos = [], None, 0
    while True:
        m = CALL_OPEN.search(text, pos)
        if not m:
            break
        try:
            args, end = _parse(text, m.end())
        except (_Bad, IndexError):
            return None
        if not text.startswith(CALL_CLOSE, end) or not isinstance(args, dict):
            return None
        first = m.start() if first is None else first
        calls.append({"name": m.group(1), "arguments": args})
        pos = end + len(CALL_CLOSE)
    if not calls:
        return None
    return (text[:first] if text[:first].strip() else None), calls
