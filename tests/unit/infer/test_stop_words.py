"""Every stop word of the chat template ends generation, not only the first: chatml's stop words are <|im_end|>
and <|im_start|>; a model that answers <|im_start|> (the second) stops there in the Hugging Face backend's batch
and stream paths (what chat, serve and predict use), and vLLM receives both as stop token ids. A stop word of several
tokens ends generation as a stop string."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from methods_support import cfg_of

from llmpipe.infer.engine import Prompter
from llmpipe.infer.generation import GenParams, vllm_kwargs
from llmpipe.models import tiny, zoo


def _backend(answer_token: int, prompter):
    """The HF backend on a tiny Llama whose output head always picks ``answer_token`` (zero weights, a bias)."""
    from llmpipe.infer.hf_backend import HFBackend

    model = zoo.build_model("builtin:tiny-llama3")
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[answer_token] = 10.0
    model.lm_head = head
    backend = object.__new__(HFBackend)   # the real generate/stream code; the model is the one built here
    backend.ref, backend.prompter, backend.tok, backend.model = None, prompter, prompter.tokenizer, model
    backend.engine_limit, backend.vision = None, None
    return backend


def test_generation_stops_at_the_templates_second_stop_word():
    tok = tiny.build_tokenizer("builtin:tiny-random")
    prompter = Prompter(tok, cfg_of("data.template=chatml"))
    im_end, im_start = (tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|im_start|>"))
    assert set(prompter.eos_ids) == {im_end, im_start}
    assert vllm_kwargs(GenParams(), 4, eos_ids=prompter.eos_ids, engine_limit=None)["stop_token_ids"] == [im_end,
                                                                                                      im_start]
    prompt = prompter.encode([{"role": "user", "content": "hello"}])
    params = GenParams(max_new_tokens=6)
    done = _backend(im_start, prompter).generate([prompt], params)[0]
    assert (done.finish_reason, done.completion_tokens, done.text) == ("stop", 1, "")
    stream = _backend(im_start, prompter).stream(prompt, params)
    assert "".join(stream) == "" and stream.result.finish_reason == "stop" and stream.result.completion_tokens == 1
    # control: a token that is no stop word runs to the limit
    a = tok.encode("a", add_special_tokens=False)[0]
    other = _backend(a, prompter).generate([prompt], params)[0]
    assert (other.finish_reason, other.completion_tokens) == ("length", 6)


def test_a_stop_word_of_several_tokens_ends_generation_as_a_stop_string():
    tok = tiny.build_tokenizer("builtin:tiny-random")
    prompter = Prompter(tok, cfg_of("data.template=chatml"))
    assert prompter.stop_texts == ()   # chatml's stop words are single tokens here (the test above)
    # a stop word of several tokens (a template whose stop word is plain text): a model that answers "a" forever
    # reaches it at its second token
    prompter.stop_texts = ("aa",)
    assert prompter.with_stops(GenParams(stop=("x",))).stop == ("x", "aa")
    assert vllm_kwargs(prompter.with_stops(GenParams()), 4, eos_ids=prompter.eos_ids, engine_limit=None)["stop"] == ["aa"]
    prompt = prompter.encode([{"role": "user", "content": "hello"}])
    a = tok.encode("a", add_special_tokens=False)[0]
    params = GenParams(max_new_tokens=8)
    done = _backend(a, prompter).generate([prompt], params)[0]
    assert done.finish_reason == "stop" and "aa" not in done.text and done.completion_tokens < 8
    stream = _backend(a, prompter).stream(prompt, params)
    assert "aa" not in "".join(stream) and stream.result.finish_reason == "stop"
