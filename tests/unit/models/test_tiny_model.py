"""The built-in offline model: builds, reloads through Auto*, is deterministic and cached atomically."""
from __future__ import annotations

import threading
import time

import pytest

from llmpipe.models import tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The session's shared build ($LLMPIPE_BUILTIN_CACHE, set by tests/conftest.py): built once per run."""
    return tiny.ensure_builtin("builtin:tiny", tmp_path_factory.mktemp("cache_a"))


@pytest.fixture
def own_cache(monkeypatch):
    """Tests of the cache itself build into their own cache root, not the shared folder."""
    monkeypatch.delenv(tiny.BUILTIN_CACHE_ENV, raising=False)


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


def test_is_builtin():
    assert tiny.is_builtin("builtin:tiny") and tiny.is_builtin("builtin:bench")
    assert not tiny.is_builtin("tiny") and not tiny.is_builtin("Qwen/Qwen2.5-0.5B")
    with pytest.raises(ValueError, match="builtin:tiny"):
        tiny.content_hash("builtin:nope")


def test_layout_and_reload(tiny_dir, tok):
    from transformers import AutoModelForCausalLM

    assert tiny_dir.name == tiny.folder_name("builtin:tiny")
    for f in ("_COMPLETE", "model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
              "tokenizer_config.json"):
        assert (tiny_dir / f).is_file(), f
    assert not [p for p in tiny_dir.parent.iterdir() if ".tmp-" in p.name]
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    c = model.config
    assert c.model_type == "llama" and type(model).__name__ == "LlamaForCausalLM"
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.max_position_embeddings) == (2048, 128, 2, 4, 2, 256, 1024)
    assert c.tie_word_embeddings is True
    assert len(tok) == 2048
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<pad>"
    assert model.generation_config.eos_token_id == tok.eos_token_id == c.eos_token_id
    assert c.pad_token_id == tok.pad_token_id
    ids = tok("hello world", return_tensors="pt").input_ids
    assert tok.bos_token_id not in ids[0].tolist()  # nothing is silently prepended
    assert model(ids).logits.shape == (1, ids.shape[1], 2048)


def test_special_tokens_are_single_tokens(tok):
    for t in tiny.SPECIAL_TOKENS:
        assert len(tok.encode(t, add_special_tokens=False)) == 1, t
    assert tok.convert_tokens_to_ids("<|im_start|>") == tok.encode("<|im_start|>", add_special_tokens=False)[0]


def test_text_round_trip(tok):
    for text in ("Reverse the order of the words.\napple river stone", "The zorblat is red.",
                 "苹果是什么颜色的？苹果是红色的。", "ünïcode ✓ 123 SUMMER"):
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    # task vocabulary is covered well: whole words, not bytes
    assert len(tok.tokenize(" zorblat")) == 1 and len(tok.tokenize(" SUMMER")) == 1


def test_chat_template_round_trip(tok):
    msgs = [{"role": "user", "content": "What is the colour of the zorblat?"},
            {"role": "assistant", "content": "The zorblat is red."}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nWhat is the colour of the zorblat?<|im_end|>\n"
                    "<|im_start|>assistant\nThe zorblat is red.<|im_end|>\n")
    with_sys = tok.apply_chat_template([{"role": "system", "content": "Be brief."}] + msgs[:1], tokenize=False,
                                       add_generation_prompt=True)
    assert with_sys.startswith("<|im_start|>system\nBe brief.<|im_end|>") and "helpful" not in with_sys
    assert with_sys.endswith("<|im_start|>assistant\n")
    enc = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "The zorblat is red.<|im_end|>"
    assert tok.decode(ids) == text


def test_deterministic_across_cache_roots(tmp_path, own_cache, monkeypatch):
    """Two builds in two cache roots are byte-identical: tokenizer training, pre-training data, seeded init and
    the pre-training loop (seed, order, one thread), on builtin:tiny's spec with 4 pre-training steps instead of
    150 (the loop is the same code at every step; a full build costs about a minute of CPU)."""
    short = dict(tiny.SPECS["builtin:tiny"], pretrain=dict(tiny.PRETRAIN, steps=4))
    monkeypatch.setitem(tiny.SPECS, "builtin:tiny", short)
    a = tiny.ensure_builtin("builtin:tiny", tmp_path / "cache_a")
    b = tiny.ensure_builtin("builtin:tiny", tmp_path / "cache_b")
    assert a != b and a.name == b.name and b.parent == tmp_path / "cache_b" / "models"
    for f in ("model.safetensors", "tokenizer.json", "config.json", "generation_config.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    # the 4 steps really trained: the same seeded init without pre-training (builtin:tiny-random) has other weights
    init = tiny.ensure_builtin("builtin:tiny-random", tmp_path / "cache_a")
    assert (init / "tokenizer.json").read_bytes() == (a / "tokenizer.json").read_bytes()
    assert (init / "model.safetensors").read_bytes() != (a / "model.safetensors").read_bytes()


def test_second_call_is_a_cache_hit(tiny_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(tiny, "build_into", lambda *a: pytest.fail("rebuilt"))
    assert tiny.ensure_builtin("builtin:tiny", tmp_path) == tiny_dir  # the shared folder wins over the root


def test_lock_builds_once_and_discards_partial(tmp_path, monkeypatch, own_cache):
    calls = []

    def fake_build(name, out):
        calls.append(name)
        time.sleep(0.3)
        (out / "model.safetensors").write_bytes(b"x")

    monkeypatch.setattr(tiny, "build_into", fake_build)
    stale = tmp_path / "models" / tiny.folder_name("builtin:tiny")
    stale.mkdir(parents=True)
    (stale / "junk").write_text("half-written")  # no _COMPLETE marker: must not be trusted
    results = []
    threads = [threading.Thread(target=lambda: results.append(tiny.ensure_builtin("builtin:tiny", tmp_path)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["builtin:tiny"] and len(set(results)) == 1
    assert not (results[0] / "junk").exists() and (results[0] / "_COMPLETE").is_file()


def test_failed_build_leaves_nothing(tmp_path, monkeypatch, own_cache):
    def boom(name, out):
        (out / "partial").write_text("x")
        raise RuntimeError("boom")

    monkeypatch.setattr(tiny, "build_into", boom)
    with pytest.raises(RuntimeError):
        tiny.ensure_builtin("builtin:tiny", tmp_path)
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []


def test_bench_model(tmp_path, own_cache):
    from transformers import AutoConfig, AutoTokenizer

    d = tiny.ensure_builtin("builtin:bench", tmp_path)
    c = AutoConfig.from_pretrained(d)
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size) == (4096, 256, 4, 8, 4, 688)
    assert len(AutoTokenizer.from_pretrained(d)) == 4096


def test_the_config_names_every_built_in_model():
    """Pre-flight knows the built-in names without importing models (config sits below models); they must be
    exactly the models tiny.py, vision_builtin.py, zoo.py, vlm_zoo.py and audio_builtin.py can build. (tiny.py is
    hashed into the built-in model's identity, so the check lives here rather than in that file.)"""
    from llmpipe.config.families.model import BUILTIN_MODELS
    from llmpipe.models import audio_builtin, tiny, vision_builtin, vlm_zoo, zoo

    built = set(tiny.SPECS) | set(vision_builtin.SPECS) | set(zoo.SPECS) | set(vlm_zoo.SPECS) | {audio_builtin.NAME}
    assert set(BUILTIN_MODELS) == built
