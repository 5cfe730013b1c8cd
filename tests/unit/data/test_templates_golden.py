"""Every named template renders LLaMA-Factory's text for the same conversation, byte for byte.

The expected strings (template_golden.json) are LLaMA-Factory's own renderings of a fixed conversation:
system "You are helpful.", Hi -> Hello!, 2+2? -> 4, and a tool conversation. Two renderers are checked:
the supervised spans (prompt/response per answer, what training uses) and the generated Jinja put on
the tokenizer (whole conversations and generation prompts, what inference and TRL use).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from llmpipe.data import templates
from llmpipe.data.templates import TEMPLATES, render_template
from llmpipe.data.templates.spans import sft_spans

GOLDEN = json.loads((Path(__file__).parent / "template_golden.json").read_text(encoding="utf-8"))
BOS, EOS, TOOLS = "\u27e8BOS\u27e9", "\u27e8EOS\u27e9", "\u27eaTOOLS\u27eb"
SYS = "You are helpful."
CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
NAMES = sorted(GOLDEN["templates"])


def _with_sys(msgs, system=SYS):
    return ([{"role": "system", "content": system}] if system else []) + msgs


def _jinja(name, msgs, gen=False, **kw):
    return render_jinja_template([msgs], chat_template=render_template(name), add_generation_prompt=gen,
                                 bos_token=BOS, eos_token=EOS, **kw)[0][0]


def _expected(block, n=2):
    return [(block[f"P{k}"], block[f"R{k}"]) for k in range(1, n + 1)]


def test_catalog_covers_every_name_of_the_reference_and_the_required_families():
    assert set(NAMES) <= set(TEMPLATES) and len(TEMPLATES) >= 45
    used_by_lf_examples = {"llama3", "qwen3_nothink", "qwen3_vl_nothink", "qwen", "moss_vl", "qwen3_vl", "qwen3",
                           "qwen3_5_nothink", "qwen2_vl", "deepseek3", "qwen3_5", "llama2", "deepseek"}
    families = {"qwen", "qwen2_vl", "qwen3", "qwen3_nothink", "llama2", "llama3", "llama4", "mistral", "ministral",
                "gemma", "gemma2", "gemma3", "gemma3n", "deepseek", "deepseek3", "deepseekr1", "glm4", "chatglm3",
                "phi", "phi4", "intern2", "yi", "cohere", "falcon", "olmo", "gpt_oss", "chatml", "alpaca", "vicuna",
                "zephyr", "default", "empty", "llava", "llava_next", "intern_vl"}
    assert used_by_lf_examples | families <= set(TEMPLATES)


@pytest.mark.parametrize("name", NAMES)
def test_supervised_spans_match(name):
    spec, g = TEMPLATES[name], GOLDEN["templates"][name]
    assert spec.efficient_eos == ("+EOS" in g["sft-system"])
    got = sft_spans(spec, _with_sys(CHAT), bos=BOS, eos=EOS)
    assert got == _expected(g["sft-system"])
    assert sft_spans(spec, CHAT, bos=BOS, eos=EOS)[0][0] == g["sft-nosystem"]["P1"]
    if "sft-nothink" in g:
        assert sft_spans(spec, _with_sys(CHAT), bos=BOS, eos=EOS, enable_thinking=False) == _expected(g["sft-nothink"])


@pytest.mark.parametrize("name", NAMES)
def test_jinja_matches(name):
    spec, g = TEMPLATES[name], GOLDEN["templates"][name]
    sft, tail = g["sft-system"], (EOS if spec.efficient_eos else "")
    if not spec.reasoning:
        assert _jinja(name, _with_sys(CHAT)) == sft["P1"] + sft["R1"] + sft["P2"] + sft["R2"] + tail
        assert _jinja(name, _with_sys(CHAT[:3]), gen=True) == sft["P1"] + sft["R1"] + sft["P2"]
        assert _jinja(name, CHAT[:1], gen=True) == g["sft-nosystem"]["P1"]
        return
    # reasoning templates: LLaMA-Factory's one-turn view (generation prompts; the last answer as response)
    if "gen-think" in g:
        assert _jinja(name, _with_sys(CHAT[:3]), gen=True) == g["gen-think"]["G"]
        assert _jinja(name, _with_sys(CHAT)) == g["gen-think"]["G"] + sft["R2"] + tail
    nothink = g["gen-nothink"]["G"]
    assert _jinja(name, _with_sys(CHAT[:3]), gen=True, enable_thinking=False) == nothink
    assert _jinja(name, _with_sys(CHAT), enable_thinking=False) == nothink + g["sft-nothink"]["R2"] + tail
    baked = render_jinja_template([_with_sys(CHAT[:3])], chat_template=templates.render_template(name, None, False),
                                  add_generation_prompt=True, bos_token=BOS, eos_token=EOS)[0][0]
    assert baked == nothink


TOOL_NAMES = [n for n in NAMES if "tools-system" in GOLDEN["templates"][n]]


def _tool_chat(name, system):
    spec = TEMPLATES[name]
    fmt = GOLDEN["tool_formats"][spec.tool_format]
    tools = fmt["tools"]
    # the tool text is glued to the system prompt (the default one when the conversation has none)
    own = SYS if system else spec.default_system
    sys_text = own + tools if own else (tools.lstrip("\n") if spec.tools_lstrip_without_system else tools)
    return [{"role": "system", "content": sys_text}, {"role": "user", "content": "Weather in Paris?"},
            {"role": "function", "content": fmt["call"]}, {"role": "tool", "content": "{\"temperature\": 20}"},
            {"role": "assistant", "content": "It is 20 degrees."}], tools


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_tool_turns_match(name):
    """Tool results go through the observation slot and tool calls through the function slot (the tool
    text and the call text themselves are the tool format's, llmpipe.data.tools)."""
    spec, g = TEMPLATES[name], GOLDEN["templates"][name]
    msgs, tools = _tool_chat(name, True)
    want = [(p.replace(TOOLS, tools), r) for p, r in _expected(g["tools-system"])]
    assert sft_spans(spec, msgs, bos=BOS, eos=EOS) == want
    nosys, _ = _tool_chat(name, False)
    assert sft_spans(spec, nosys, bos=BOS, eos=EOS)[0][0] == g["tools-nosystem"]["P1"].replace(TOOLS, tools)
    if not spec.reasoning and spec.jinja_override is None:
        tail = EOS if spec.efficient_eos else ""
        assert _jinja(name, msgs) == "".join(p + r for p, r in want) + tail


def test_a_run_with_chatml_gets_the_generated_jinja_with_tool_call_turns():
    """render_template('chatml') stays the built-in models' frozen text; apply_template puts the slots'
    Jinja on the tokenizer, which writes a tool-call turn (role function) through the function slot."""
    from types import SimpleNamespace

    from llmpipe.data.templates import apply_template
    from llmpipe.data.templates.catalog import CHATML_FROZEN

    assert render_template("chatml").endswith(CHATML_FROZEN[-60:])
    tok = SimpleNamespace(chat_template=None)
    text = apply_template(tok, "chatml", None)
    assert tok.chat_template == text and text != render_template("chatml")
    msgs, tools = _tool_chat("chatml", True)
    g = GOLDEN["templates"]["chatml"]["tools-system"]
    want = "".join(p.replace(TOOLS, tools) + r for p, r in _expected(g))
    assert render_jinja_template([msgs], chat_template=text, bos_token=BOS, eos_token=EOS)[0][0] == want
