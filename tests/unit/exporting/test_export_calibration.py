"""GPTQ calibration text (no torch): where it comes from, what is rejected, the held-out split, the windows;
the GPTQ group size; and the model card, which never holds a token."""
from __future__ import annotations

import json

import pytest

from llmpipe.data.errors import DataError
from llmpipe.exporting import calibration
from llmpipe.exporting.gptq import group_size_for

TOKEN = "hf_CardTestToken0123456789abcdef"


class WordTokenizer:
    """One id per word; eos = 0."""
    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1 + len(w) for w in text.split()]}


def test_bundled_pretraining_data_calibrates():
    texts = calibration.read_texts("demo_pt", None)
    assert len(texts) > 100 and all(isinstance(t, str) and t for t in texts)
    calib, held = calibration.split(texts, seed=42)
    assert len(held) == 32 and len(calib) == len(texts) - 32 and not set(held) & set(calib)
    assert calibration.split(texts, seed=42) == (calib, held)
    assert calibration.split(texts, seed=1)[1] != held


@pytest.mark.parametrize("content,match", [
    (None, "no such dataset"),
    ("[{\"text\": \"a b\"}, ", "not valid JSON"),
    (json.dumps([{"instruction": "q", "output": "a"}] * 3), "`text` column"),
    (json.dumps([{"text": "only one document"}, {"text": "  "}]), "at least 2 documents"),
    ("{\"text\": \"fine\"}\nnot json\n", "cannot be read"),
])
def test_malformed_calibration_data_is_a_clear_error(tmp_path, content, match):
    path = tmp_path / ("calib.jsonl" if content and content.startswith("{") else "calib.json")
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=match):
        calibration.read_texts(str(path), None)


def test_text_files_and_windows(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("\n".join(" ".join(["word"] * n) for n in (30, 25, 40, 12)))
    texts = calibration.read_texts(str(path), None)
    assert len(texts) == 4
    windows = calibration.samples(texts, WordTokenizer(), nsamples=3, maxlen=16, seed=0)
    assert len(windows) == 3 and all(len(w) == 16 for w in windows)
    assert calibration.samples(texts, WordTokenizer(), nsamples=3, maxlen=16, seed=0) == windows
    everything = calibration.samples(texts, WordTokenizer(), nsamples=1000, maxlen=16, seed=0)
    assert len(everything) == (30 + 25 + 40 + 12 + 4) // 16       # all full windows, no more
    short = calibration.samples(["a b c d e f g h i j"], WordTokenizer(), nsamples=8, maxlen=1024, seed=0)
    assert len(short) == 1 and len(short[0]) == 11                  # fewer tokens than maxlen: one window
    with pytest.raises(DataError, match="only 3 tokens"):
        calibration.samples(["a b"], WordTokenizer(), nsamples=8, maxlen=16, seed=0)


def test_group_size_divides_every_input_width():
    assert group_size_for({"hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 256}) == 128
    assert group_size_for({"hidden_size": 896, "num_attention_heads": 14, "intermediate_size": 4864}) == 128
    assert group_size_for({"hidden_size": 96, "num_attention_heads": 4, "intermediate_size": 200}) == 8
    assert group_size_for({"hidden_size": 100, "num_attention_heads": 4, "intermediate_size": 300}) == -1


def test_model_card_never_holds_a_token(hydra_compose, monkeypatch):
    from llmpipe import secrets
    from llmpipe.config.typed import typed
    from llmpipe.exporting import card

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr("sys.argv", ["llmpipe", "+recipe=demo", f"model.hf_hub_token={TOKEN}",
                                     "export.dir=out", f"run.name=x{TOKEN}"])
    secrets.remember([TOKEN])
    obj = typed(hydra_compose("+recipe=demo", "export.quantization_bit=4", "export.quantization_dataset=demo_pt"))
    text = card.render(obj, fingerprint="f" * 64, title="demo", adapters=["trained in this run"],
                       train={"train_loss": 1.5, "eval_loss": 1.2, "eval_runtime": 3.0},
                       merge={"max_logit_diff_vs_adapter": 1e-6},
                       quantize={"bits": 4, "group_size": 128, "calibration_windows": 8, "calibration_tokens": 512,
                                 "perplexity_unquantized": 10.4, "perplexity_quantized": 10.5},
                       verified={"dtype": "float32", "max_logit_diff_vs_adapter_model": 0.0},
                       weights={"shards": 2, "total_bytes": 2_000_000})
    assert TOKEN not in text and "hf_hub_token" not in text
    for part in ("base model | `builtin:tiny`", "GPTQ 4-bit", "demo_pt", "train: eval_loss | 1.2",
                 "held-out perplexity, quantized | 10.5", "python -m llmpipe +recipe=demo", "export.dir=out"):
        assert part in text, part
    assert "eval_runtime" not in text
