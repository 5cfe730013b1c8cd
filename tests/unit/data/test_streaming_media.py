"""data.streaming with media: a stream is tokenized as text only, so a dataset with images/videos/audios columns is
refused with that reason (never with a wrong one such as "the model is text-only"), by the load stage's streaming
path before it reads a row, and by pre-flight (rule data-streaming-media) before anything runs."""
from __future__ import annotations

import types

import pytest

from llmpipe.data.errors import DataError


def opts(**data):
    from llmpipe.data.options import DataOptions

    d = {"dataset": ["vlm_colours"], "max_samples": None, "cutoff_len": 128, "streaming": True, "template": "chatml",
         **data}
    return DataOptions.from_cfg(types.SimpleNamespace(data=types.SimpleNamespace(**d),
                                                      train=types.SimpleNamespace(seed=0, stage="sft")))


def test_the_stream_refuses_media_with_the_reason(tmp_path):
    from llmpipe.data.loader import resolve_spec
    from llmpipe.data.streaming import prepare_stream, tokenized_rows

    o = opts()
    with pytest.raises(DataError, match=r"'vlm_colours' is registered with media \(images\), and data.streaming "
                                        r"tokenizes text only.*no pixel values.*set data.streaming=false"):
        next(tokenized_rows(resolve_spec("vlm_colours", o), o, None, {}))   # the train side's generator
    # the load stage's side, before any tokenizer or row is touched
    with pytest.raises(DataError, match=r"'vlm_colours_eval' is registered with media.*tokenizes text only"):
        prepare_stream(opts(dataset=["demo_sft"], eval_dataset=["vlm_colours_eval"]), None, tmp_path)


def test_preflight_refuses_streaming_media():
    from llmpipe.config.compose import compose
    from llmpipe.pipeline.preflight import validate

    _, problems = validate(compose(["+recipe=vlm_demo", "data.streaming=true", "train.max_steps=2"]))
    found = [p for p in problems if p.rule == "data-streaming-media"]
    assert {p.key for p in found} == {"data.dataset", "data.eval_dataset"}, [p.render() for p in problems]
    assert all("tokenizes text only" in p.render() and "text-only model" not in p.render() for p in found)
