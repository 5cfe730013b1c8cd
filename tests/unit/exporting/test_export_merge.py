"""Merging LoRA adapters (a tiny random Llama built in the test): several adapters in order, an adapter that
changes nothing, adapters whose base does not match (recorded base, architecture, weight shapes)."""
from __future__ import annotations

import json

import pytest

from llmpipe.exporting.adapters import base_mismatch, check_adapter, merge_all
from llmpipe.exporting.errors import ExportError

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


def _llama(hidden=64, layers=1, vocab=97):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2))


def _adapter(model, folder, seed, trained=True, targets=("q_proj", "v_proj")):
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules=list(targets),
                                                                  init_lora_weights=not trained))
    if trained:   # B is random too: the adapter really changes the model
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.2)
    peft_model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("base")
    _llama().save_pretrained(str(folder))
    return str(folder), AutoModelForCausalLM.from_pretrained(str(folder))


def _fresh(base):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base[0]).eval()


PROBE = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29]])


def _logits(m):
    with torch.no_grad():
        return m(input_ids=PROBE).logits


def test_several_adapters_merge_in_order(base, tmp_path):
    from peft import PeftModel

    a = _adapter(base[1], tmp_path / "a", seed=1)
    b = _adapter(base[1], tmp_path / "b", seed=2, targets=("o_proj", "up_proj"))
    merged, reference, report = merge_all(_fresh(base), [a, b], PROBE, base[0], 1e-4, print)
    assert [r["adapter"] for r in report] == [str(a), str(b)]
    # reference: the first adapter merged, the second one as a live adapter on top
    ref = PeftModel.from_pretrained(_fresh(base), str(a)).merge_and_unload()
    ref = PeftModel.from_pretrained(ref, str(b)).eval()
    expected = _logits(ref)
    assert torch.allclose(_logits(merged), expected, atol=1e-4)
    assert torch.allclose(reference, expected, atol=1e-5)
    assert all(r["max_logit_change"] > 1e-3 for r in report)
    assert not torch.allclose(_logits(merged), _logits(_fresh(base)), atol=1e-3)


def test_an_adapter_that_changes_nothing_is_an_error(base, tmp_path):
    zero = _adapter(base[1], tmp_path / "zero", seed=3, trained=False)
    with pytest.raises(ExportError, match="changed nothing"):
        merge_all(_fresh(base), [zero], PROBE, base[0], 1e-4, print)


def test_an_adapter_of_another_shape_does_not_fit(base, tmp_path):
    other = _adapter(_llama(hidden=32), tmp_path / "other", seed=4)
    cfg = json.loads((other / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = base[0]          # it even claims the right base
    (other / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="do not fit the base model.*q_proj.lora_A"):
        check_adapter(other, base[0], _fresh(base))


def test_only_lora_adapters_merge(base, tmp_path):
    a = _adapter(base[1], tmp_path / "a", seed=1)
    cfg = json.loads((a / "adapter_config.json").read_text())
    cfg["peft_type"] = "IA3"
    (a / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="only LoRA"):
        check_adapter(a, base[0], _fresh(base))


def test_recorded_base_comparisons(tmp_path):
    root = tmp_path / "models"
    tiny, rnd, old = (root / "builtin-tiny-0123456789abcdef", root / "builtin-tiny-random-0123456789abcdef",
                      root / "builtin-tiny-fedcba9876543210")
    for d in (tiny, rnd):
        d.mkdir(parents=True)
    assert base_mismatch(str(tiny), str(tiny)) == (None, None)
    assert "builtin:tiny-random" in base_mismatch(str(rnd), str(tiny))[0]
    assert "another build" in base_mismatch(str(old), str(tiny))[0]          # gone folder: name tells the build
    a, b = tmp_path / "a", tmp_path / "b"
    for d, hidden in ((a, 64), (b, 128)):
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": hidden}))
    assert "hidden_size 64 vs 128" in base_mismatch(str(a), str(b))[0]
    (b / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    error, note = base_mismatch(str(a), str(b))
    assert error is None and "same architecture" in note
    assert "Qwen/Qwen2.5-0.5B" in base_mismatch("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-1.5B")[0]
    assert base_mismatch("/elsewhere/base", str(b))[0] is None                 # unknown: shapes decide
