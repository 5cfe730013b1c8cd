"""Function calling: tool definitions, tool calls and tool results, rendered in a ``data.tool_format``.

Internally a conversation keeps tool calls as messages of role ``function_call`` whose content is the
canonical JSON ``{"text": str | null, "calls": [{"name": str, "arguments": object}]}`` and tool results
as role ``tool``; ``tools`` is a JSON list of function definitions as the data gave them (OpenAI's
``{"type": "function", "function": ...}`` wrapper taken off). At tokenization time a tool format
(llmpipe.data.tool_formats, LLaMA-Factory's names and texts) turns them into plain text turns:

* the tool-definition text is appended to the system prompt with no separator (the system turn is
  written even when the only system text is the tools);
* a call turn is the call's text (if any) followed by the calls written in the format;
* a result stays a ``tool`` turn that the chat template renders (``<|im_start|>tool`` for chatml,
  ``ipython`` for llama3, ...), except in the Qwen formats, where it is a user turn wrapped in
  ``<tool_response></tool_response>`` as Qwen models expect.

``data.tool_format=null`` picks the template's own format (``default_tool_format`` of the named
templates, when that exists; ``qwen`` for ``qwen*`` names and ``default`` otherwise before).
"""
from __future__ import annotations

import json

from llmpipe.data.tool_formats import FORMATS, ToolFormatError

TOOL_FORMATS = tuple(FORMATS)
QWEN_RESULTS = ("qwen", "qwen3_5")  # formats whose tool results are user turns in <tool_response>


class ToolDataError(ValueError):
    """A tools column or a tool call that cannot be understood (reported as a bad row)."""


def _template_default(template: str | None) -> str:
    from llmpipe.data import templates

    own = getattr(templates, "default_tool_format", None)  # the named templates' own formats, when known
    if own is not None and template:
        found = own(template)
        if found:
            return found
    return "qwen" if template and template.startswith("qwen") else "default"


def resolve_tool_format(tool_format: str | None, template: str | None) -> str:
    if tool_format:
        if tool_format not in TOOL_FORMATS:
            from llmpipe.data.errors import DataError

            raise DataError(f"data.tool_format={tool_format!r} is not a known tool format; allowed: "
                            f"{', '.join(TOOL_FORMATS)} (or null)")
        return tool_format
    return _template_default(template)


def _loads(value, what: str):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as e:
            raise ToolDataError(f"{what} is not valid JSON ({e.msg})") from None
    return value


def parse_tools(value) -> str | None:
    """The canonical JSON list of function definitions, from a JSON string or a list (OpenAI
    ``{"type": "function", "function": {...}}`` wrappers are unwrapped, nothing else is changed, so the
    formats write the definitions as given); None when empty."""
    if value in (None, "", [], "[]"):
        return None
    tools = _loads(value, "tools column")
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list):
        raise ToolDataError(f"tools column is {type(tools).__name__}, not a list of function definitions")
    out = []
    for i, t in enumerate(tools):
        if isinstance(t, dict) and isinstance(t.get("function"), dict):
            t = t["function"]
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise ToolDataError(f"tool {i} has no name")
        if not isinstance(t.get("parameters", {}), dict):
            raise ToolDataError(f"tool {i} ({t['name']}) has parameters that are not an object")
        out.append(t)
    return json.dumps(out, ensure_ascii=False)


def _call(c, i: int) -> dict:
    if isinstance(c, dict) and isinstance(c.get("function"), dict):  # OpenAI tool_calls entry
        c = c["function"]
    if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
        raise ToolDataError(f"tool call {i} has no name")
    args = _loads(c.get("arguments", c.get("parameters", {})), f"arguments of tool call {i}")
    if not isinstance(args, dict):
        raise ToolDataError(f"arguments of tool call {i} are {type(args).__name__}, not an object")
    return {"name": c["name"], "arguments": args}


def canonical_call(value, text: str | None = None) -> str:
    """The canonical function_call content from a JSON string / object / list of calls."""
    value = _loads(value, "function call")
    if isinstance(value, dict) and "calls" in value:
        text, value = value.get("text") or text, value["calls"]
    calls = value if isinstance(value, list) else [value]
    if not calls:
        raise ToolDataError("function call lists no calls")
    return json.dumps({"text": text or None, "calls": [_call(c, i) for i, c in enumerate(calls)]},
                      ensure_ascii=False)


def _format(fmt: str):
    if fmt not in FORMATS:  # a named template's LF default that llmpipe does not write
        raise ToolDataError(f"tool format {fmt!r} (the template's own) is not written by llmpipe; set "
                            f"data.tool_format to one of: {', '.join(TOOL_FORMATS)}")
    return FORMATS[fmt]


def tools_text(tools_json: str, fmt: str, date: str | None = None) -> str:
    """The tool-definition text of ``fmt`` (appended to the system prompt as it is)."""
    return _format(fmt).tools_text(json.loads(tools_json), date)


def call_text(content: str, fmt: str) -> str:
    """The assistant turn of a canonical function_call: its text, then the calls in ``fmt``."""
    data = json.loads(content)
    fmt_ = _format(fmt)
    try:
        return (data.get("text") or "") + fmt_.calls_text(data["calls"])
    except ToolFormatError as e:
        raise ToolDataError(str(e)) from None


def parse_calls(text: str, fmt: str) -> tuple[str | None, list[dict]] | None:
    """(content before the calls, [{"name", "arguments"}]) when generated ``text`` holds tool calls
    written in ``fmt``; None when it is a plain answer."""
    return FORMATS[fmt].extract(text) if fmt in FORMATS else None


def observation(content: str, fmt: str) -> dict:
    if fmt in QWEN_RESULTS:
        return {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}
    return {"role": "tool", "content": content}


def render_messages(messages: list[dict], system: str | None, tools_json: str | None, fmt: str,
                    named: bool = False, lstrip_tools: bool = False) -> list[dict]:
    """Plain role/content messages (system first when there is one) with tools, calls and results rendered.
    ``named``: for a named template (llmpipe.data.templates), which writes a call turn (role ``function``)
    and a result (role ``tool``) through its own slots, as LLaMA-Factory does; otherwise a call is an
    assistant turn and a result a ``tool`` turn (a user turn in ``<tool_response>`` for the Qwen formats).
    ``lstrip_tools``: without a system prompt the tool text loses its leading newlines (LF's moss_vl)."""
    if tools_json:
        text = tools_text(tools_json, fmt)
        system = (system or "") + (text.lstrip("\n") if lstrip_tools and not system else text)
    out = [{"role": "system", "content": system}] if system else []
    for m in messages:
        if m["role"] == "function_call":
            out.append({"role": "function" if named else "assistant", "content": call_text(m["content"], fmt)})
        elif m["role"] == "tool":
            out.append({"role": "tool", "content": m["content"]} if named else observation(m["content"], fmt))
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out
