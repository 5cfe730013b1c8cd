"""Tool formats under LLaMA-Factory's names: golden texts (tool definitions, one call, parallel calls) for
LF's fixed example tool, byte for byte; generated calls parse back to the calls that were written."""
from __future__ import annotations

import json

import pytest

from llmpipe.data import tools as T
from llmpipe.data.tool_formats import FORMATS

TOOL = {"name": "get_weather", "description": "Get the weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                       "required": ["city"]}}
PARIS = {"name": "get_weather", "arguments": {"city": "Paris"}}
ROME = {"name": "get_weather", "arguments": {"city": "Rome"}}
DATE = "06 Dec 2026"

# format: (tool text, call text, parallel call text or None when the format refuses parallel calls)
GOLDEN = {
    'default': (
        "You have access to the following tools:\n> Tool Name: get_weather\nTool Description: Get the weather of a city.\nTool Args:\n  - city (string, required): City name\n\nUse the following format if using a tool:\n```\nAction: tool name (one of [get_weather])\nAction Input: the input to the tool, in a JSON format representing the kwargs (e.g. ```{\"input\": \"hello world\", \"num_beams\": 5}```)\n```\n",
        "Action: get_weather\nAction Input: {\"city\": \"Paris\"}",
        "Action: get_weather\nAction Input: {\"city\": \"Paris\"}\nAction: get_weather\nAction Input: {\"city\": \"Rome\"}"),
    'qwen': (
        "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather of a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>"),
    'qwen3_5': (
        "\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>\n{\"name\": \"get_weather\", \"description\": \"Get the weather of a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after\n- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls\n</IMPORTANT>",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n</parameter>\n</function>\n</tool_call>"),
    'llama3': (
        "Cutting Knowledge Date: December 2023\nToday Date: 06 Dec 2026\n\nYou have access to the following functions. To call a function, please respond with JSON for a function call. Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}. Do not use variables.\n\n{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n        \"description\": \"Get the weather of a city.\",\n        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n                \"city\": {\n                    \"type\": \"string\",\n                    \"description\": \"City name\"\n                }\n            },\n            \"required\": [\n                \"city\"\n            ]\n        }\n    }\n}\n\n",
        "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
        "[{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}, {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}]"),
    'mistral': (
        "[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather of a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}}][/AVAILABLE_TOOLS]",
        "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
        "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]"),
    'glm4': (
        "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具\n\n## get_weather\n\n{\n    \"name\": \"get_weather\",\n    \"description\": \"Get the weather of a city.\",\n    \"parameters\": {\n        \"type\": \"object\",\n        \"properties\": {\n            \"city\": {\n                \"type\": \"string\",\n                \"description\": \"City name\"\n            }\n        },\n        \"required\": [\n            \"city\"\n        ]\n    }\n}\n在调用上述函数时，请使用 Json 格式表示调用的参数。",
        "get_weather\n{\"city\": \"Paris\"}",
        None),
    'glm4_moe': (
        "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather of a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, output the function name and arguments within the following XML format:\n<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>\n",
        "\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>",
        "\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>"),
    'seed_oss': (
        "system\nYou are Doubao, a helpful AI assistant. You may call one or more functions to assist with the user query.Tool List:\nYou are authorized to use the following tools (described in JSON Schema format). Before performing any task, you must decide how to call them based on the descriptions and parameters of these tools.\n[{\"name\": \"get_weather\", \"description\": \"Get the weather of a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}]\n工具调用请遵循如下格式:\n<seed:tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>value_1</parameter>\n<parameter=example_parameter_2>This is the value for the second parameter\nthat can span\nmultiple lines</parameter>\n</function>\n</seed:tool_call>\n",
        "\n<seed:tool_call>\n<function=get_weather\n<parameter=city>Paris</parameter>\n</function>\n</seed:tool_call>",
        "\n<seed:tool_call>\n<function=get_weather\n<parameter=city>Paris</parameter>\n</function>\n</seed:tool_call>\n\n<seed:tool_call>\n<function=get_weather\n<parameter=city>Rome</parameter>\n</function>\n</seed:tool_call>"),
    'lfm2': (
        "List of tools: <|tool_list_start|>[{\"name\": \"get_weather\", \"description\": \"Get the weather of a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}]<|tool_list_end|>",
        "<|tool_call_start|>[get_weather(city=\"Paris\")]<|tool_call_end|>",
        "<|tool_call_start|>[get_weather(city=\"Paris\"), get_weather(city=\"Rome\")]<|tool_call_end|>"),
    'minimax1': (
        "You are provided with these tools:\n<tools>\n{\"name\": \"get_weather\", \"description\": \"Get the weather of a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}\n</tools>\n\nIf you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and provide tool-name and json-object of arguments, following the format below:\n<tool_calls>\n{\"name\": <tool-name-1>, \"arguments\": <args-json-object-1>}\n...\n</tool_calls>",
        "<tool_calls>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_calls>",
        "<tool_calls>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_calls>"),
    'minimax2': (
        "\n\n# Tools\n\nYou may call one or more tools to assist with the user query.\nHere are the tools available in JSONSchema format:\n\n<tools>\n<tool>{\"name\": \"get_weather\", \"description\": \"Get the weather of a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}</tool>\n</tools>\n\nWhen making tool calls, use XML format to invoke tools and pass parameters:\n\n<minimax:tool_call>\n<invoke name=\"tool-name-1\">\n<parameter name=\"param-key-1\">param-value-1</parameter>\n<parameter name=\"param-key-2\">param-value-2</parameter>\n...\n</invoke>\n</minimax:tool_call>",
        "<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n</invoke>",
        "<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n</invoke>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Rome</parameter>\n</invoke>"),
    'ling': (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather of a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>\ndetailed thinking off",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>"),
    'gemma4': (   # Gemma 4's declaration syntax: <|"|>-quoted strings, bare keys, upper-case types
        "declaration:get_weather{description:<|\"|>Get the weather of a city.<|\"|>,parameters:{properties:{city:{description:<|\"|>City name<|\"|>,type:<|\"|>STRING<|\"|>}},required:[<|\"|>city<|\"|>],type:<|\"|>OBJECT<|\"|>}}",
        "<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}<tool_call|>",
        "<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}<tool_call|><|tool_call>call:get_weather{city:<|\"|>Rome<|\"|>}<tool_call|>"),
}


def test_every_format_has_a_golden():
    assert sorted(GOLDEN) == sorted(FORMATS) == sorted(T.TOOL_FORMATS)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_texts(name):
    tools_text, call, parallel = GOLDEN[name]
    f = FORMATS[name]
    assert f.tools_text([TOOL], DATE) == tools_text
    assert f.tools_text([{"type": "function", "function": TOOL}], DATE) == tools_text  # wrapped: same text
    assert f.calls_text([PARIS]) == call
    if parallel is None:
        with pytest.raises(ValueError, match="parallel"):
            f.calls_text([PARIS, ROME])
    else:
        assert f.calls_text([PARIS, ROME]) == parallel


ARGS = {"city": "São Paulo", "days": 3, "units": ["C", "F"], "detail": {"wind": True}}


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("prefix", ["", "Let me look that up. "])
def test_round_trip(name, prefix):
    f = FORMATS[name]
    calls = [{"name": "get_weather", "arguments": ARGS}]
    if GOLDEN[name][2] is not None:
        calls.append({"name": "get_time", "arguments": {"zone": "UTC"}})
    text = f.calls_text(calls)
    if name in ("llama3", "mistral", "glm4"):  # bare JSON formats: a call turn is the calls alone
        prefix = ""
    assert f.extract(prefix + text) == ((prefix or None), calls)
    assert T.parse_calls(prefix + text, name) == ((prefix or None), calls)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_plain_answers_are_not_calls(name):
    for text in ("It is 20 degrees.", "", "Action: maybe later", '{"not": "a call"}', "<tool_call>{broken"):
        assert FORMATS[name].extract(text) is None, text


def test_model_side_wrappers_are_understood():
    """Models prefix calls with control text that the training-side call text leaves to the template."""
    assert FORMATS["mistral"].extract('[TOOL_CALLS] [{"name": "f", "arguments": {"a": 1}}]') == \
        (None, [{"name": "f", "arguments": {"a": 1}}])
    assert FORMATS["minimax2"].extract('<minimax:tool_call>\n<invoke name="f">\n<parameter name="a">1</parameter>\n'
                                       "</invoke>\n</minimax:tool_call>") == (None, [{"name": "f", "arguments": {"a": 1}}])
    assert FORMATS["llama3"].extract('{"name": "f", "arguments": {"a": 1}}') == (None, [{"name": "f", "arguments": {"a": 1}}])


def test_system_text_and_call_turns():
    """Tools are glued to the system text with no separator (LF); the call turn keeps its text in front."""
    tools = T.parse_tools([{"type": "function", "function": TOOL}])
    msgs = T.render_messages([{"role": "user", "content": "Weather in Paris?"},
                              {"role": "function_call", "content": T.canonical_call(PARIS, "Sure. ")},
                              {"role": "tool", "content": '{"temperature": 20}'},
                              {"role": "assistant", "content": "It is 20 degrees."}], "You are helpful.", tools, "qwen")
    assert msgs[0] == {"role": "system", "content": "You are helpful." + GOLDEN["qwen"][0]}
    assert msgs[2] == {"role": "assistant", "content": "Sure. " + GOLDEN["qwen"][1]}
    assert msgs[3] == {"role": "user", "content": '<tool_response>\n{"temperature": 20}\n</tool_response>'}
    only_tools = T.render_messages([{"role": "user", "content": "q"}], None, tools, "default")
    assert only_tools[0] == {"role": "system", "content": GOLDEN["default"][0]}
    assert T.render_messages([{"role": "tool", "content": "r"}], None, None, "llama3") == [{"role": "tool", "content": "r"}]


def test_tools_are_kept_as_given():
    """A definition without description or parameters is written as the data gave it (LF dumps it as is)."""
    bare = json.loads(T.parse_tools([{"name": "now"}]))
    assert bare == [{"name": "now"}]
    assert FORMATS["qwen"].tools_text(bare).count('{"type": "function", "function": {"name": "now"}}') == 1
    assert "> Tool Name: now\nTool Description: \nTool Args:\n\n" in FORMATS["default"].tools_text(bare)


def test_parallel_calls_in_glm4_are_a_bad_row():
    with pytest.raises(T.ToolDataError, match="parallel"):
        T.call_text(T.canonical_call([PARIS, ROME]), "glm4")


def test_default_tool_format_follows_the_template():
    assert T.resolve_tool_format(None, "qwen") == "qwen" and T.resolve_tool_format(None, None) == "default"
    assert T.resolve_tool_format("mistral", "qwen") == "mistral"


def _golden_lf():
    from pathlib import Path

    return json.loads((Path(__file__).parent / "template_golden.json").read_text(encoding="utf-8"))


def _lf_tool_names():
    from llmpipe.data.templates import TEMPLATES

    g = _golden_lf()["templates"]
    return [n for n in sorted(g) if "tools-system" in g[n] and TEMPLATES[n].tool_format in FORMATS]


@pytest.mark.parametrize("name", _lf_tool_names())
def test_named_templates_with_tools_are_lfs_bytes(name):
    """Data -> llmpipe's tool format (tools text, call text) -> the named template's slots: the supervised
    spans are LLaMA-Factory's for its tool conversation (system + tools, call, result, answer), byte for byte;
    the tool text is compared with LF's own, not with ours."""
    import re

    from llmpipe.data.processors import chat_messages
    from llmpipe.data.templates import TEMPLATES
    from llmpipe.data.templates.spans import sft_spans

    spec, lf = TEMPLATES[name], _golden_lf()
    bos, eos, mark = "\u27e8BOS\u27e9", "\u27e8EOS\u27e9", "\u27eaTOOLS\u27eb"
    internal = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "function_call", "content": T.canonical_call(PARIS)},
                {"role": "tool", "content": '{"temperature": 20}'},
                {"role": "assistant", "content": "It is 20 degrees."}]
    msgs = chat_messages({"messages": internal, "system": "You are helpful.", "tools": T.parse_tools([TOOL])},
                         None, spec.tool_format, name)
    got = sft_spans(spec, msgs, bos=bos, eos=eos)
    lf_tools = lf["tool_formats"][spec.tool_format]["tools"]
    date = re.search(r"Today Date: (\d\d \w{3} \d{4})", msgs[0]["content"])
    lf_tools = lf_tools.replace("\u27e8DATE\u27e9", date.group(1)) if date else lf_tools
    block = lf["templates"][name]["tools-system"]
    want = [(block[f"P{k}"].replace(mark, lf_tools), block[f"R{k}"]) for k in (1, 2)]
    assert got == want  # (efficient_eos templates: the closing EOS is the processor's, not a span's)
    nosys = chat_messages({"messages": internal, "system": None, "tools": T.parse_tools([TOOL])},
                          spec.default_system, spec.tool_format, name)  # as the loader: the template's default
    # system, or none (then moss_vl strips the tool text's leading newlines)
    p1 = lf["templates"][name]["tools-nosystem"]["P1"]
    assert sft_spans(spec, nosys, bos=bos, eos=eos)[0][0] == p1.replace(mark, lf_tools)


def test_the_gemma4_templates_write_their_own_tool_format():
    """gemma4 is LF's tool format of the gemma4/gemma4n templates: rows with tools render in it."""
    assert T.resolve_tool_format(None, "gemma4") == "gemma4"
    msgs = T.render_messages([{"role": "function_call", "content": T.canonical_call(PARIS)}], None,
                             T.parse_tools([TOOL]), "gemma4")
    assert msgs == [{"role": "system", "content": GOLDEN["gemma4"][0]}, {"role": "assistant", "content": GOLDEN["gemma4"][1]}]


def test_gemma4_values_and_declarations():
    """gemma4 sorts argument keys (nested ones too), writes true/false/null and lists bare, keeps quoted strings
    whole (commas, colons, braces) when reading calls back; tools are joined by newlines, a response schema is
    written with its type only when it is OBJECT, and property schemas keep only description and type."""
    f = FORMATS["gemma4"]
    args = {"z": None, "city": "a, b: {c}", "n": 1.5, "opts": {"y": False, "x": [1, "two"]}}
    text = f.calls_text([{"name": "f", "arguments": args}])
    assert text == ('<|tool_call>call:f{city:<|"|>a, b: {c}<|"|>,n:1.5,opts:{x:[1,<|"|>two<|"|>],y:false},'
                    'z:null}<tool_call|>')
    assert f.extract("ok " + text) == ("ok ", [{"name": "f", "arguments": args}])
    tools = [{"name": "a", "description": "A.", "response": {"description": "R.", "type": "object"}},
             {"name": "b", "parameters": {"type": "object", "properties": {"u": {"type": "string", "enum": ["C"]}}}}]
    assert f.tools_text(tools) == ('declaration:a{description:<|"|>A.<|"|>,response:{description:<|"|>R.<|"|>,'
                                   'type:<|"|>OBJECT<|"|>}}\ndeclaration:b{description:<|"|><|"|>,parameters:'
                                   '{properties:{u:{type:<|"|>STRING<|"|>}},type:<|"|>OBJECT<|"|>}}')
    assert f.extract('<|tool_call>call:f{city:<|"|>unclosed}<tool_call|>') is None
