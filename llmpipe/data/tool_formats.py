"""Tool formats under LLaMA-Factory's ``tool_format`` names: how tool definitions and tool calls are written
as text for training, and how calls are read back out of generated text (chat, serve).

Each format is a :class:`ToolFormat` with three parts:

* ``tools_text(tools)`` — the tool-definition text that is appended, with no separator, to the system
  prompt (it carries its own leading newlines where the format has them);
* ``calls_text(calls)`` — the text of one assistant turn that makes ``calls``
  (``[{"name": str, "arguments": dict}]``);
* ``extract(text)`` — the inverse: ``(content, calls)`` when ``text`` holds calls in this format, else None.

``tools`` are function definitions as given in the data (unwrapped: ``{"name", "description",
"parameters"}``); formats that show OpenAI's ``{"type": "function", "function": ...}`` wrapper add it.
JSON is written with ``ensure_ascii=False`` and Python's default separators, key order kept.
The texts are the same bytes LLaMA-Factory writes for the same data (facts of its formats, our own code);
``llama3`` includes today's date as LF does (``date=`` pins it).
"""
from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from llmpipe.data import tool_format_gemma4 as gemma4


class ToolFormatError(ValueError):
    """Calls that a tool format cannot write (e.g. parallel calls in glm4)."""


def _dump(value, indent=None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _wrapped(tool: dict) -> dict:
    return tool if tool.get("type") == "function" and "function" in tool else {"type": "function", "function": tool}


def _value(v) -> str:
    """An argument value inside an XML-like call: strings as they are, anything else as JSON."""
    return v if isinstance(v, str) else _dump(v)


def _unvalue(s: str):
    try:
        return json.loads(s)
    except ValueError:
        return s


def _call(name: str, arguments) -> dict:
    if isinstance(arguments, str):
        arguments = _unvalue(arguments)
    return {"name": name.strip(), "arguments": arguments if isinstance(arguments, dict) else {}}


def _json_call(obj) -> dict | None:
    if isinstance(obj, dict) and isinstance(obj.get("name"), str):
        args = obj.get("arguments", obj.get("parameters", {}))
        args = _unvalue(args) if isinstance(args, str) else args
        if isinstance(args, dict):
            return {"name": obj["name"], "arguments": args}
    return None


def _content(text: str, lead: str = "") -> str | None:
    """The text in front of the calls (``lead``: what the call text itself starts with, taken off)."""
    text = text[:-len(lead)] if lead and text.endswith(lead) else text
    return text if text.strip() else None


# --- default --------------------------------------------------------------------------------------------
def _default_tools(tools: list[dict], date=None) -> str:
    body, names = "", []
    for t in tools:
        params = t.get("parameters") or {}
        required = params.get("required") or []
        args = ""
        for name, p in (params.get("properties") or {}).items():
            p = p if isinstance(p, dict) else {}
            req = ", required" if name in required else ""
            enum = f", should be one of [{', '.join(map(str, p['enum']))}]" if p.get("enum") else ""
            items = f", where each item should be {p['items'].get('type', '')}" if isinstance(p.get("items"), dict) \
                and p.get("items") else ""
            args += f"  - {name} ({p.get('type', '')}{req}): {p.get('description', '')}{enum}{items}\n"
        body += f"> Tool Name: {t['name']}\nTool Description: {t.get('description', '')}\nTool Args:\n{args}\n"
        names.append(t["name"])
    return ("You have access to the following tools:\n" + body + "Use the following format if using a tool:\n```\n"
            f"Action: tool name (one of [{', '.join(names)}])\n"
            "Action Input: the input to the tool, in a JSON format representing the kwargs "
            '(e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n')


def _default_calls(calls: list[dict]) -> str:
    return "\n".join(f"Action: {c['name']}\nAction Input: {_dump(c['arguments'])}" for c in calls)


_ACTION = re.compile(r"Action:\s*([a-zA-Z0-9_.-]+)\s*Action Input:\s*(.+?)(?=\s*Action:|\s*$)", re.DOTALL)


def _default_extract(text: str):
    found = list(_ACTION.finditer(text))
    calls = []
    for m in found:
        try:
            args = json.loads(m.group(2).strip())
        except ValueError:
            return None
        if not isinstance(args, dict):
            return None
        calls.append({"name": m.group(1), "arguments": args})
    return (_content(text[:found[0].start()]), calls) if calls else None


# --- qwen / ling / minimax1: JSON objects inside tags -----------------------------------------------------
_QWEN_HEAD = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
              "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n")
_QWEN_TAIL = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
              "<tool_call></tool_call> XML tags:\n<tool_call>\n"
              '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


def _qwen_sigs(tools) -> str:
    return "\n".join(_dump(_wrapped(t)) for t in tools)


def _qwen_tools(tools, date=None) -> str:
    return "\n\n" + _QWEN_HEAD + _qwen_sigs(tools) + _QWEN_TAIL


def _ling_tools(tools, date=None) -> str:
    return _QWEN_HEAD + _qwen_sigs(tools) + _QWEN_TAIL + "\ndetailed thinking off"


def _qwen_calls(calls) -> str:
    return "\n".join("<tool_call>\n" + _dump({"name": c["name"], "arguments": c["arguments"]}) + "\n</tool_call>"
                     for c in calls)


def _blocks_extract(pattern: str):
    rx = re.compile(pattern, re.DOTALL)

    def extract(text: str):
        found = list(rx.finditer(text))
        calls = []
        for m in found:
            for line in ([m.group(1)] if "\n{" not in m.group(1).strip() else m.group(1).strip().split("\n")):
                try:
                    call = _json_call(json.loads(line.strip()))
                except ValueError:
                    return None
                if call is None:
                    return None
                calls.append(call)
        return (_content(text[:found[0].start()]), calls) if calls else None
    return extract


def _minimax1_tools(tools, date=None) -> str:
    return ("You are provided with these tools:\n<tools>\n" + "\n".join(_dump(t) for t in tools)
            + "\n</tools>\n\nIf you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and "
            "provide tool-name and json-object of arguments, following the format below:\n<tool_calls>\n"
            '{"name": <tool-name-1>, "arguments": <args-json-object-1>}\n...\n</tool_calls>')


def _minimax1_calls(calls) -> str:
    return "<tool_calls>\n" + "\n".join(_dump({"name": c["name"], "arguments": c["arguments"]})
                                        for c in calls) + "\n</tool_calls>"


# --- qwen3_5: <function=...><parameter=...> ---------------------------------------------------------------
_Q35_TAIL = (
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified "
    "format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n- You may provide optional reasoning for your function call in "
    "natural language BEFORE the function call, but NOT after\n- If there is no function call available, answer "
    "the question like normal with your current knowledge and do not tell the user about function calls\n"
    "</IMPORTANT>")


def _q35_tools(tools, date=None) -> str:
    return ("\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>\n"
            + "\n".join(_dump(t) for t in tools) + _Q35_TAIL)


def _xml_calls(head: str, param: str, tail: str):
    """A writer of calls as ``head`` (with {name}), one ``param`` (with {key}, {value}) per argument, ``tail``;
    calls joined by newlines."""
    def write(calls) -> str:
        return "\n".join(head.replace("{name}", c["name"]) + "".join(
            param.replace("{key}", k).replace("{value}", _value(v)) for k, v in c["arguments"].items()) + tail
            for c in calls)
    return write


_q35_calls = _xml_calls("<tool_call>\n<function={name}>\n", "<parameter={key}>\n{value}\n</parameter>\n",
                        "</function>\n</tool_call>")


_Q35_CALL = re.compile(r"<tool_call>\s*<function=([^>\n]+)>(.*?)</function>\s*</tool_call>", re.DOTALL)
_Q35_PARAM = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.DOTALL)


def _xml_extract(call_rx: re.Pattern, param_rx: re.Pattern, lead: str = ""):
    """Calls matched by ``call_rx`` (name, body), arguments by ``param_rx`` (key, value) in the body."""
    def extract(text: str):
        found = list(call_rx.finditer(text))
        calls = [{"name": m.group(1).strip(),
                  "arguments": {k.strip(): _unvalue(v) for k, v in param_rx.findall(m.group(2))}} for m in found]
        return (_content(text[:found[0].start()], lead), calls) if calls else None
    return extract


# --- llama3 / mistral: bare JSON ----------------------------------------------------------------------------
def _llama3_tools(tools, date=None) -> str:
    date = date or datetime.datetime.now().strftime("%d %b %Y")
    return ("Cutting Knowledge Date: December 2023\nToday Date: " + date + "\n\n"
            "You have access to the following functions. To call a function, please respond with JSON for a function "
            'call. Respond in the format {"name": function name, "parameters": dictionary of argument name and its '
            'value}. Do not use variables.\n\n' + "".join(_dump(_wrapped(t), indent=4) + "\n\n" for t in tools))


def _llama3_calls(calls) -> str:
    out = [{"name": c["name"], "parameters": c["arguments"]} for c in calls]
    return _dump(out[0] if len(out) == 1 else out)


def _json_extract(prefix: str = ""):
    def extract(text: str):
        body = text.strip()
        if prefix and body.startswith(prefix):
            body = body[len(prefix):].strip()
        try:
            obj = json.loads(body)
        except ValueError:
            return None
        calls = [_json_call(o) for o in (obj if isinstance(obj, list) else [obj])]
        return (None, calls) if calls and all(calls) else None
    return extract


def _mistral_tools(tools, date=None) -> str:
    return "[AVAILABLE_TOOLS] " + _dump([_wrapped(t) for t in tools]) + "[/AVAILABLE_TOOLS]"


def _mistral_calls(calls) -> str:
    return _dump([{"name": c["name"], "arguments": c["arguments"]} for c in calls])


# --- glm4 / glm4_moe -----------------------------------------------------------------------------------------
_GLM4_INTRO = ("你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
               "你的任务是针对用户的问题和要求提供适当的答复和支持。")


def _glm4_tools(tools, date=None) -> str:
    return _GLM4_INTRO + "\n\n# 可用工具" + "".join(
        f"\n\n## {t['name']}\n\n{_dump(t, indent=4)}\n在调用上述函数时，请使用 Json 格式表示调用的参数。" for t in tools)


def _glm4_calls(calls) -> str:
    if len(calls) > 1:
        raise ToolFormatError("tool_format glm4 writes one call per turn (GLM-4 has no parallel calls)")
    return f"{calls[0]['name']}\n{_dump(calls[0]['arguments'])}"


def _glm4_extract(text: str):
    if "\n" not in text:
        return None
    name, args = text.split("\n", 1)
    try:
        call = _json_call({"name": name.strip(), "arguments": json.loads(args.strip())})
    except ValueError:
        return None
    return (None, [call]) if call and call["name"] else None


def _glm4_moe_tools(tools, date=None) -> str:
    return ("\n\n" + _QWEN_HEAD + _qwen_sigs(tools) + "\n</tools>\n\nFor each function call, output the function name "
            "and arguments within the following XML format:\n<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>"
            "\n<arg_value>{arg-value-1}</arg_value>\n<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}"
            "</arg_value>\n...\n</tool_call>\n")


_glm4_moe_calls = _xml_calls("\n<tool_call>{name}", "\n<arg_key>{key}</arg_key>\n<arg_value>{value}</arg_value>", "")


_NAME = re.compile(r"[\w.\-]+")
_GLM_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.DOTALL)


def _glm4_moe_extract(text: str):
    if "<tool_call>" not in text:
        return None
    head, *blocks = text.split("<tool_call>")
    calls = []
    for b in blocks:
        b = b.split("</tool_call>")[0]
        name = b.split("\n", 1)[0].strip()
        if not _NAME.fullmatch(name):
            return None
        calls.append({"name": name, "arguments": {k.strip(): _unvalue(v) for k, v in _GLM_PAIR.findall(b)}})
    return _content(head, "\n"), calls


# --- seed_oss / minimax2 / lfm2 ----------------------------------------------------------------------------
def _seed_tools(tools, date=None) -> str:
    return ("system\nYou are Doubao, a helpful AI assistant. You may call one or more functions to assist with the "
            "user query.Tool List:\nYou are authorized to use the following tools (described in JSON Schema format). "
            "Before performing any task, you must decide how to call them based on the descriptions and parameters of "
            "these tools.\n" + _dump(list(tools)) + "\n工具调用请遵循如下格式:\n<seed:tool_call>\n"
            "<function=example_function_name>\n<parameter=example_parameter_1>value_1</parameter>\n"
            "<parameter=example_parameter_2>This is the value for the second parameter\nthat can span\nmultiple lines"
            "</parameter>\n</function>\n</seed:tool_call>\n")


_seed_calls = _xml_calls("\n<seed:tool_call>\n<function={name}\n", "<parameter={key}>{value}</parameter>\n",
                         "</function>\n</seed:tool_call>")


_SEED_CALL = re.compile(r"<seed:tool_call>\s*<function=([^>\n]+)>?\s*(.*?)</function>\s*</seed:tool_call>", re.DOTALL)
_SEED_PARAM = re.compile(r"<parameter=([^>\n]+)>(.*?)</parameter>", re.DOTALL)


def _minimax2_tools(tools, date=None) -> str:
    return ("\n\n# Tools\n\nYou may call one or more tools to assist with the user query.\nHere are the tools available "
            "in JSONSchema format:\n\n<tools>\n" + "\n".join(f"<tool>{_dump(t)}</tool>" for t in tools)
            + "\n</tools>\n\nWhen making tool calls, use XML format to invoke tools and pass parameters:\n\n"
            '<minimax:tool_call>\n<invoke name="tool-name-1">\n<parameter name="param-key-1">param-value-1</parameter>'
            '\n<parameter name="param-key-2">param-value-2</parameter>\n...\n</invoke>\n</minimax:tool_call>')


_minimax2_calls = _xml_calls('<invoke name="{name}">\n', '<parameter name="{key}">{value}</parameter>\n', "</invoke>")


_INVOKE = re.compile(r'<invoke name="([^"]+)">(.*?)</invoke>', re.DOTALL)
_MM_PARAM = re.compile(r'<parameter name="([^"]+)">(.*?)</parameter>', re.DOTALL)


def _minimax2_extract(text: str):
    """Bare ``<invoke>`` blocks (as written for training) or inside ``<minimax:tool_call>`` (as the model
    is told to answer)."""
    found = list(_INVOKE.finditer(text))
    calls = [{"name": m.group(1), "arguments": {k: _unvalue(v) for k, v in _MM_PARAM.findall(m.group(2))}}
             for m in found]
    if not calls:
        return None
    head = text[:found[0].start()]
    head = head[:head.rfind("<minimax:tool_call>")] if "<minimax:tool_call>" in head else head
    return _content(head), calls


def _lfm2_tools(tools, date=None) -> str:
    return "List of tools: <|tool_list_start|>" + _dump(list(tools)) + "<|tool_list_end|>"


def _lfm2_calls(calls) -> str:
    return "<|tool_call_start|>[" + ", ".join(
        c["name"] + "(" + ", ".join(f"{k}={_dump(v)}" for k, v in c["arguments"].items()) + ")"
        for c in calls) + "]<|tool_call_end|>"


def _lfm2_extract(text: str):
    import ast

    m = re.search(r"<\|tool_call_start\|>(.*?)<\|tool_call_end\|>", text, re.DOTALL)
    if not m:
        return None
    try:
        tree = ast.parse(m.group(1).strip(), mode="eval").body
    except SyntaxError:
        return None
    consts = {"true": True, "false": False, "null": None}

    class JsonNames(ast.NodeTransformer):  # values are written as JSON: true / false / null
        def visit_Name(self, node):
            return ast.Constant(consts[node.id]) if node.id in consts else node

    def val(node):
        return ast.literal_eval(JsonNames().visit(node))

    calls = []
    try:
        for node in tree.elts if isinstance(tree, ast.List) else [tree]:
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                return None
            calls.append({"name": node.func.id, "arguments": {kw.arg: val(kw.value) for kw in node.keywords}})
    except ValueError:
        return None
    return (_content(text[:m.start()]), calls) if calls else None


def _unwrap(tool: dict) -> dict:
    return tool["function"] if tool.get("type") == "function" and isinstance(tool.get("function"), dict) else tool


@dataclass(frozen=True)
class ToolFormat:
    name: str
    write_tools: Callable[..., str]
    write_calls: Callable[[list], str]
    extract: Callable[[str], tuple | None]

    def tools_text(self, tools: list[dict], date: str | None = None) -> str:
        """The tool-definition text (definitions bare or OpenAI-wrapped)."""
        return self.write_tools([_unwrap(t) for t in tools], date)

    def calls_text(self, calls: list[dict]) -> str:
        return self.write_calls(calls)


FORMATS: dict[str, ToolFormat] = {f.name: f for f in (
    ToolFormat("default", _default_tools, _default_calls, _default_extract),
    ToolFormat("qwen", _qwen_tools, _qwen_calls, _blocks_extract(r"<tool_call>(.+?)</tool_call>")),
    ToolFormat("qwen3_5", _q35_tools, _q35_calls, _xml_extract(_Q35_CALL, _Q35_PARAM)),
    ToolFormat("llama3", _llama3_tools, _llama3_calls, _json_extract()),
    ToolFormat("mistral", _mistral_tools, _mistral_calls, _json_extract("[TOOL_CALLS]")),
    ToolFormat("glm4", _glm4_tools, _glm4_calls, _glm4_extract),
    ToolFormat("glm4_moe", _glm4_moe_tools, _glm4_moe_calls, _glm4_moe_extract),
    ToolFormat("seed_oss", _seed_tools, _seed_calls, _xml_extract(_SEED_CALL, _SEED_PARAM, "\n")),
    ToolFormat("lfm2", _lfm2_tools, _lfm2_calls, _lfm2_extract),
    ToolFormat("minimax1", _minimax1_tools, _minimax1_calls, _blocks_extract(r"<tool_calls>(.+?)</tool_calls>")),
    ToolFormat("minimax2", _minimax2_tools, _minimax2_calls, _minimax2_extract),
    ToolFormat("ling", _ling_tools, _qwen_calls, _blocks_extract(r"<tool_call>(.+?)</tool_call>")),
    ToolFormat("gemma4", gemma4.tools_text, gemma4.calls_text, gemma4.extract),
)}
