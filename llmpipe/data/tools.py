"""Function calling: tool definitions, tool calls and tool results, rendered in a ``data.tool_format``.

Internally a conversation keeps tool calls as messages of role ``function_call`` whose content is the
canonical JSON ``{"text": str | null, "calls": [{"name": str, "arguments": object}]}`` and tool results
as role ``tool``; ``tools`` is a JSON list of function definitions ``{"name", "description",
"parameters"}``. At tokenization time a tool format turns them into plain text turns:

* ``default`` — a readable plain-text protocol: the tools are listed in the system prompt, a call is
  ``Action: <name>`` + ``Action Input: <JSON arguments>``, a result stays a ``tool`` turn (the template
  renders it: ``<|im_start|>tool`` for chatml, ``ipython`` for llama3, ``Observation:`` for default).
* ``qwen`` — the Qwen2.5 / Qwen3 protocol: tool signatures inside ``<tools></tools>`` in the system
  prompt, calls as ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``, results as a user turn
  wrapped in ``<tool_response></tool_response>``.

``data.tool_format=null`` picks ``qwen`` for ``data.template=qwen`` and ``default`` otherwise.
"""
from __future__ import annotations

import json

TOOL_FORMATS = ("default", "qwen")


class ToolDataError(ValueError):
    """A tools column or a tool call that cannot be understood (reported as a bad row)."""


def resolve_tool_format(tool_format: str | None, template: str | None) -> str:
    if tool_format:
        if tool_format not in TOOL_FORMATS:
            from llmpipe.data.errors import DataError

            raise DataError(f"data.tool_format={tool_format!r} is not a known tool format; allowed: "
                            f"{', '.join(TOOL_FORMATS)} (or null)")
        return tool_format
    return "qwen" if template == "qwen" else "default"


def _loads(value, what: str):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as e:
            raise ToolDataError(f"{what} is not valid JSON ({e.msg})") from None
    return value


def parse_tools(value) -> str | None:
    """The canonical JSON list of function definitions, from a JSON string or a list (OpenAI
    ``{"type": "function", "function": {...}}`` wrappers are unwrapped); None when empty."""
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
        out.append({"name": t["name"], "description": t.get("description", ""),
                    "parameters": t.get("parameters") or {"type": "object", "properties": {}}})
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


def _arg_lines(params: dict) -> list[str]:
    props = params.get("properties") or {}
    required = set(params.get("required") or ())
    lines = []
    for name, p in props.items():
        p = p if isinstance(p, dict) else {}
        kind = p.get("type", "any")
        if p.get("enum"):
            kind += f", one of {p['enum']}"
        need = "required" if name in required else "optional"
        lines.append(f"    {name} ({kind}, {need})" + (f": {p['description']}" if p.get("description") else ""))
    return lines


def tools_text(tools_json: str, fmt: str) -> str:
    tools = json.loads(tools_json)
    if fmt == "qwen":
        sigs = "\n".join(json.dumps({"type": "function", "function": t}, ensure_ascii=False) for t in tools)
        return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
                f"{sigs}\n</tools>\n\nFor each function call, return a json object with function name and "
                "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')
    lines = ["You can use the following tools:"]
    for t in tools:
        lines.append(f"- {t['name']}" + (f": {t['description']}" if t.get("description") else ""))
        args = _arg_lines(t.get("parameters") or {})
        lines += (["  arguments:"] + args) if args else ["  arguments: none"]
    names = ", ".join(t["name"] for t in tools)
    lines += ["", "To use a tool, answer with one block per call:",
              f"Action: the tool name (one of {names})",
              "Action Input: the arguments as a JSON object",
              "The result of each call comes back in the next turn."]
    return "\n".join(lines)


def call_text(content: str, fmt: str) -> str:
    data = json.loads(content)
    parts = [data["text"]] if data.get("text") else []
    for c in data["calls"]:
        args = json.dumps(c["arguments"], ensure_ascii=False)
        if fmt == "qwen":
            parts.append("<tool_call>\n" + json.dumps({"name": c["name"], "arguments": c["arguments"]},
                                                      ensure_ascii=False) + "\n</tool_call>")
        else:
            parts.append(f"Action: {c['name']}\nAction Input: {args}")
    return "\n".join(parts)


def observation(content: str, fmt: str) -> dict:
    if fmt == "qwen":
        return {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}
    return {"role": "tool", "content": content}


def render_messages(messages: list[dict], system: str | None, tools_json: str | None, fmt: str) -> list[dict]:
    """Plain role/content messages (system first when there is one) with tools, calls and results rendered."""
    if tools_json:
        extra = tools_text(tools_json, fmt)
        system = f"{system}\n\n{extra}" if system else extra
    out = [{"role": "system", "content": system}] if system else []
    for m in messages:
        if m["role"] == "function_call":
            out.append({"role": "assistant", "content": call_text(m["content"], fmt)})
        elif m["role"] == "tool":
            out.append(observation(m["content"], fmt))
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out
