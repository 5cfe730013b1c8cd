"""The generate/infer settings reach the backends faithfully: every knob changes what the Hugging Face
GenerationConfig and vLLM SamplingParams receive, greedy decoding passes no sampling knob, lengths combine
as documented, requests override what they may. Also the OpenAI request validation and the server's
concurrency gate. No torch, no model."""
from __future__ import annotations

import pytest

from llmpipe.pipeline.preflight import validate
from llmpipe.infer.generation import GenParams, PromptTooLong, from_config, hf_kwargs, vllm_kwargs

EOS = [2, 7]


@pytest.fixture(scope="module")
def typed(hydra_compose):
    def make(*overrides):
        validated, problems = validate(hydra_compose("data.dataset=demo_sft", *overrides))
        assert not problems, problems
        return validated.obj
    return make


def hf(p: GenParams, prompt_len: int = 10) -> dict:
    return hf_kwargs(p, prompt_len, eos_ids=EOS, pad_id=3)


def test_config_reaches_the_params(typed):
    obj = typed("generate.do_sample=true", "generate.temperature=0.5", "generate.top_p=0.9", "generate.top_k=7",
                "generate.num_beams=3", "generate.max_length=300", "generate.max_new_tokens=100",
                "generate.repetition_penalty=1.2", "generate.length_penalty=0.8", "generate.skip_special_tokens=false",
                "infer.use_kv_cache=false")
    p = from_config(obj)
    assert p == GenParams(do_sample=True, temperature=0.5, top_p=0.9, top_k=7, num_beams=3, max_length=300,
                          max_new_tokens=100, repetition_penalty=1.2, length_penalty=0.8, skip_special_tokens=False,
                          use_cache=False, seed=None)


def test_eval_num_beams_and_seed_apply_to_prediction_only(typed):
    obj = typed("generate.num_beams=2", "data.eval_num_beams=5", "train.do_predict=true",
                "train.predict_with_generate=true", "data.eval_dataset=demo_sft_eval", "train.seed=11")
    assert from_config(obj).num_beams == 2 and from_config(obj).seed is None
    assert from_config(obj, for_eval=True).num_beams == 5 and from_config(obj, for_eval=True).seed == 11


def test_greedy_passes_no_sampling_knob():
    kw = hf(GenParams(do_sample=False, temperature=0.3, top_p=0.5, top_k=4))
    assert kw["do_sample"] is False
    assert kw["temperature"] is None and kw["top_p"] is None and kw["top_k"] is None
    v = vllm_kwargs(GenParams(do_sample=False, temperature=0.3), 10, eos_ids=EOS, engine_limit=None)
    assert v["temperature"] == 0.0 and v["top_p"] == 1.0 and v["top_k"] == -1


SAMPLING = GenParams(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, num_beams=1, max_length=512,
                     max_new_tokens=64, repetition_penalty=1.0, length_penalty=1.0)


@pytest.mark.parametrize("change,hf_key,hf_value", [
    ({"temperature": 0.2}, "temperature", 0.2),
    ({"top_p": 0.3}, "top_p", 0.3),
    ({"top_k": 3}, "top_k", 3),
    ({"num_beams": 4}, "num_beams", 4),
    ({"max_new_tokens": 9}, "max_new_tokens", 9),
    ({"max_length": 30}, "max_new_tokens", 20),          # 30 in all - a 10-token prompt
    ({"repetition_penalty": 1.3}, "repetition_penalty", 1.3),
    ({"num_beams": 2, "length_penalty": 2.0}, "length_penalty", 2.0),
    ({"use_cache": False}, "use_cache", False),
    ({"do_sample": False}, "do_sample", False),
    ({"stop": ("###",)}, "stop_strings", ["###"]),
])
def test_each_knob_changes_what_transformers_receives(change, hf_key, hf_value):
    base, changed = hf(SAMPLING), hf(SAMPLING.with_request(**change) if "stop" in change else
                                     GenParams(**{**SAMPLING.__dict__, **change}))
    assert changed[hf_key] == hf_value
    assert base.get(hf_key) != changed[hf_key]
    assert changed["eos_token_id"] == EOS and changed["pad_token_id"] == 3


@pytest.mark.parametrize("change,key,value", [
    ({"temperature": 0.2}, "temperature", 0.2),
    ({"top_p": 0.3}, "top_p", 0.3),
    ({"top_k": 3}, "top_k", 3),
    ({"top_k": 0}, "top_k", -1),                          # 0 = off, vLLM's spelling is -1
    ({"max_new_tokens": 9}, "max_tokens", 9),
    ({"repetition_penalty": 1.3}, "repetition_penalty", 1.3),
    ({"skip_special_tokens": False}, "skip_special_tokens", False),
])
def test_each_knob_changes_what_vllm_receives(change, key, value):
    v = vllm_kwargs(GenParams(**{**SAMPLING.__dict__, **change}), 10, eos_ids=EOS, engine_limit=None)
    assert v[key] == value
    assert v["stop_token_ids"] == EOS


def test_lengths_combine_max_new_tokens_max_length_and_the_engine_limit():
    p = GenParams(max_length=100, max_new_tokens=50)
    assert p.new_tokens(10) == 50 and p.new_tokens(80) == 20
    assert p.new_tokens(10, engine_limit=40) == 30
    with pytest.raises(PromptTooLong, match="max_length"):
        p.new_tokens(100)


def test_requests_override_what_they_may():
    base = GenParams(do_sample=False, temperature=0.95, max_new_tokens=64)
    assert base.with_request(temperature=0).do_sample is False
    hot = base.with_request(temperature=0.5, max_new_tokens=8, stop=["x"])
    assert (hot.do_sample, hot.temperature, hot.max_new_tokens, hot.stop) == (True, 0.5, 8, ("x",))
    assert base.with_request(temperature=None) == base


def test_stop_scanner_never_shows_a_stop_string():
    from llmpipe.infer.engine import StopScanner

    s = StopScanner(["<END>"])
    out = "".join(s.feed(p) for p in ["Hel", "lo <E", "N", "D> tail"]) + s.flush()
    assert out == "Hello " and s.stopped
    plain = StopScanner([])
    assert "".join(plain.feed(p) for p in ["a", "b"]) + plain.flush() == "ab"


def test_vllm_engine_arguments(typed):
    from llmpipe.infer.model_ref import ModelRef
    from llmpipe.infer.vllm_backend import engine_args

    obj = typed("infer.vllm_maxlen=512", "infer.vllm_gpu_util=0.5", "infer.vllm_enforce_eager=true",
                "infer.vllm_max_lora_rank=64", "infer.dtype=bfloat16", "infer.vllm_config='{\"max_num_seqs\": 4}'")
    kw = engine_args(ModelRef("/m", "/t", ("/a",)), obj)
    assert kw["max_model_len"] == 512 and kw["gpu_memory_utilization"] == 0.5 and kw["enforce_eager"] is True
    assert kw["enable_lora"] is True and kw["max_lora_rank"] == 64 and kw["dtype"] == "bfloat16"
    assert kw["max_num_seqs"] == 4 and kw["model"] == "/m" and kw["tokenizer"] == "/t"
    assert "enable_lora" not in engine_args(ModelRef("/m", "/m"), obj)


# ------------------------------------------------------------------------------ the OpenAI request layer
def _parse(body, **kw):
    import json

    from llmpipe.infer.openai_api import parse_chat_request

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_chat_request(raw, model_id="demo", max_tokens_limit=kw.get("limit", 256))


def test_a_good_request():
    req = _parse({"model": "demo", "messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "hi"},
                                                 {"role": "assistant", "content": [{"type": "text", "text": "yo"}]},
                                                 {"role": "user", "content": "again"}],
                  "max_tokens": 16, "temperature": 0, "stop": "\n", "stream": True,
                  "stream_options": {"include_usage": True}})
    assert req.system == "Be brief." and [m["role"] for m in req.messages] == ["user", "assistant", "user"]
    assert req.messages[1]["content"] == "yo"
    assert req.overrides == {"max_new_tokens": 16, "temperature": 0.0, "stop": ["\n"]}
    assert req.stream and req.include_usage


USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("body,status,param", [
    (b"{nope", 400, None),
    ([1, 2], 400, None),
    ({"messages": []}, 400, "messages"),
    ({}, 400, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, 400, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, 400, "messages[1].role"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, 400, "messages"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    ({"messages": USER, "max_tokens": 10 ** 9}, 400, "max_tokens"),
    ({"messages": USER, "max_tokens": 0}, 400, "max_tokens"),
    ({"messages": USER, "max_completion_tokens": "many"}, 400, "max_completion_tokens"),
    ({"messages": USER, "temperature": 5}, 400, "temperature"),
    ({"messages": USER, "top_p": 0}, 400, "top_p"),
    ({"messages": USER, "n": 3}, 400, "n"),
    ({"messages": USER, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"messages": USER, "presence_penalty": 0.5}, 400, "presence_penalty"),
    ({"messages": USER, "tools": []}, 400, "tools"),
    ({"messages": USER, "model": "gpt-4"}, 404, "model"),
    # regressions: NaN / Infinity used to pass validation and reach transformers; deep nesting killed the
    # connection without an answer (RecursionError in the handler thread)
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 400, None),
    (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}', 400, None),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}', 400, "temperature"),
    (b'{"a":' * 100000 + b"1" + b"}" * 100000, 400, None),
])
def test_bad_requests_are_4xx(body, status, param):
    from llmpipe.infer.openai_api import ApiError

    with pytest.raises(ApiError) as e:
        _parse(body)
    assert e.value.status == status and e.value.param == param
    assert e.value.body()["error"]["message"]


def test_gate_admits_slots_plus_queue_then_refuses():
    import anyio

    from llmpipe.serve import Gate

    async def scenario():
        gate = Gate(slots=1, queue=1)
        assert await gate.enter()                  # generating
        async with anyio.create_task_group() as tg:
            got = []

            async def wait():
                got.append(await gate.enter())

            tg.start_soon(wait)                    # waits for the slot
            await anyio.wait_all_tasks_blocked()
            assert gate.inside == 2 and not await gate.enter()   # full: the server answers 429 at once
            gate.leave()
        assert got == [True]                       # the waiter got the slot
        gate.leave()
        assert await gate.enter() and gate.inside == 1

    anyio.run(scenario)
