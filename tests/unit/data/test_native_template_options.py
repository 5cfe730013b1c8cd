"""data.enable_thinking / data.preserve_thinking reach the tokenizer's own chat template (data.template=null)
as the template variables of those names, in training (llmpipe.data.native_template) and at inference
(llmpipe.infer.engine.Prompter); a template that does not read them refuses a value other than the default."""
from __future__ import annotations

import pytest
from native_chat_templates import family_tokenizer
from test_native_template import NOSYS, _trained

from llmpipe.data.errors import DataError
from llmpipe.data.native_template import template_options, template_variables
from llmpipe.data.processors import encode_native


@pytest.fixture(scope="module")
def qwen3():
    return family_tokenizer("qwen3")   # its template branches on enable_thinking in the generation prompt


def test_enable_thinking_reaches_the_tokenizers_template(qwen3):
    assert "enable_thinking" in template_variables(qwen3.chat_template)
    trained = {}
    for value in (True, False, None):
        (ids, labels, _), = encode_native([NOSYS], qwen3, mask_history=True, native="tools", enable_thinking=value)
        trained[value] = _trained(qwen3, ids, labels)
    # thinking on (or the template's default): the answer's empty thought block is trained; off: it is in the
    # prompt, as Qwen3's template writes it with enable_thinking=False, and only the answer is trained
    assert trained[True] == trained[None] == "<think>\n\n</think>\n\n4<|im_end|>\n"
    assert trained[False] == "4<|im_end|>\n"
    assert template_options(qwen3, False, False) == {"enable_thinking": False}
    assert template_options(qwen3, None, False) == {}


def test_a_template_that_does_not_read_the_option_refuses_it():
    tok = family_tokenizer("llama3.1")
    assert template_options(tok, True, False) == {}
    for kw in ({"enable_thinking": False}, {"enable_thinking": None}, {"preserve_thinking": True}):
        with pytest.raises(DataError, match="does not read"):
            encode_native([NOSYS], tok, native="tools", **kw)


def test_inference_prompts_get_the_option(qwen3):
    from methods_support import cfg_of

    from llmpipe.infer.engine import Prompter

    msgs = [{"role": "user", "content": "2+2?"}]
    off = Prompter(family_tokenizer("qwen3"), cfg_of("data.enable_thinking=false")).render(msgs)
    on = Prompter(family_tokenizer("qwen3"), cfg_of()).render(msgs)
    assert off == on + "<think>\n\n</think>\n\n"
