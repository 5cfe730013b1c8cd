"""Padding-free batches (train.padding_free) and the variable-length SDPA they run on: the same losses and
gradients as padded batches, for the causal-LM collator and for TRL's fused-LM-head calls (DPO)."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from llmpipe.models.varlen_attention import NAME, use_varlen_sdpa
from llmpipe.training.collators import IGNORE_INDEX
from llmpipe.training.padding_free import PaddingFreeCollator, PaddingFreeError, decide, unpad_model_calls

from methods_support import micro_model, micro_tokenizer

LENGTHS = (5, 11, 3, 8)


def _features(seed: int = 3, lengths=LENGTHS, prompt: int = 2):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(2, 96, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return out


def _padded(features):
    from transformers import DataCollatorForSeq2Seq

    return dict(DataCollatorForSeq2Seq(micro_tokenizer(), label_pad_token_id=IGNORE_INDEX, padding=True)(features))


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _cfg(padding_free=None, **model):
    return SimpleNamespace(train=SimpleNamespace(padding_free=padding_free),
                           model=SimpleNamespace(**{"shift_attn": False, "use_unsloth": False, **model}))


def test_collator_concatenates_the_batch_into_one_row_with_restarting_positions():
    feats = _features()
    batch = PaddingFreeCollator()(feats)
    assert batch["input_ids"].shape == (1, sum(LENGTHS)) and batch["use_cache"] is False
    assert "attention_mask" not in batch
    starts = [0, 5, 16, 19]
    assert batch["position_ids"][0, starts].tolist() == [0, 0, 0, 0]
    assert batch["position_ids"][0].tolist()[:6] == [0, 1, 2, 3, 4, 0]
    # each example's first label is ignored: in the row it would be predicted from the previous example
    assert all(batch["labels"][0, s].item() == IGNORE_INDEX for s in starts)
    assert batch["labels"][0, 5 + 3].item() == feats[1]["input_ids"][3]


@pytest.mark.parametrize("attention", ["sdpa", "varlen", "eager"])
def test_padding_free_rows_give_the_padded_loss_and_gradients(attention):
    feats = _features()
    model = micro_model(tie_word_embeddings=False)
    model.config._attn_implementation = "eager" if attention == "eager" else "sdpa"
    ref_loss, ref_grads = _loss_and_grads(model, _padded(feats))
    if attention == "varlen":
        assert use_varlen_sdpa(model) and model.config._attn_implementation == NAME
    loss, grads = _loss_and_grads(model, PaddingFreeCollator()(feats))
    assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for name, g in ref_grads.items():
        assert torch.allclose(grads[name], g, rtol=1e-4, atol=1e-6), name


def test_varlen_sdpa_leaves_padded_and_cached_calls_to_sdpa():
    model = micro_model()
    model.eval()
    x = torch.randint(2, 96, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(x)
    mask[1, 6:] = 0
    with torch.no_grad():
        ref = model(input_ids=x, attention_mask=mask).logits
        ref_gen = model.generate(x[:1], max_new_tokens=4, do_sample=False)
    use_varlen_sdpa(model)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=x, attention_mask=mask).logits, ref, atol=1e-5)
        assert torch.equal(model.generate(x[:1], max_new_tokens=4, do_sample=False), ref_gen)


def test_unpadded_fused_lm_head_calls_match_the_padded_ones(monkeypatch):
    from trl.trainer.utils import add_fused_lm_head

    import llmpipe.models.varlen_attention as varlen

    segmented = []
    real_segments = varlen._segments
    monkeypatch.setattr(varlen, "_segments", lambda p: segmented.append(p.shape) or real_segments(p))

    feats = _features(lengths=(7, 4, 10, 6), prompt=3)
    batch = _padded(feats)
    labels = batch["labels"]
    model = micro_model(tie_word_embeddings=False)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    call = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                fused_lm_head=True, use_cache=False)
    ref = model(**call)
    ref.log_probs.sum().backward()
    ref_grad = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    model.zero_grad()
    assert use_varlen_sdpa(model)
    remove = unpad_model_calls(model)
    out = model(**call)
    out.log_probs.sum().backward()
    # the unpadded call reached the per-example attention (hooks on the same module as varlen's marker)
    assert segmented and segmented[0] == (1, int(batch["attention_mask"].sum()))
    for field in ("log_probs", "entropy", "mean_logits", "is_top1", "label_mask"):
        a, b = getattr(ref, field), getattr(out, field)
        assert a.shape == b.shape, field
        assert torch.allclose(a.float(), b.float(), atol=1e-5), field
    assert torch.allclose(out.loss, ref.loss, atol=1e-6)
    assert torch.allclose(model.model.layers[0].self_attn.q_proj.weight.grad, ref_grad, rtol=1e-4, atol=1e-6)
    remove()
    again = model(**{**call, "fused_lm_head": False, "labels": None})
    assert again.logits.shape[:2] == batch["input_ids"].shape   # hooks removed: padded calls are plain again


def test_decide_follows_the_setting_and_the_attention():
    notes = []
    assert decide(_cfg(False), micro_model(), notes.append) is False and notes == []
    model = micro_model()
    assert decide(_cfg(None), model, notes.append) is True
    assert model.config._attn_implementation == NAME and "padding-free" in notes[-1]
    eager = micro_model()
    eager.config._attn_implementation = "eager"
    assert decide(_cfg(None), eager, notes.append) is False and "'eager'" in notes[-1]
    assert decide(_cfg(True), eager, notes.append) is True   # asked for: masked attention over the row
    with pytest.raises(PaddingFreeError, match="model.shift_attn"):
        decide(_cfg(True, shift_attn=True), micro_model(), notes.append)
    assert decide(_cfg(None, shift_attn=True), micro_model(), notes.append) is False


def _gate(overrides: list[str], env: dict | None = None) -> str:
    """The packages a fresh process hides for the composed config (printed as a list)."""
    code = ("import sys; from omegaconf import OmegaConf; from llmpipe.config.compose import compose; "
            "from llmpipe.models.backend_gate import hide_unused; "
            f"cfg = OmegaConf.to_object(compose({overrides!r})); hidden = hide_unused(cfg); "
            "import importlib.util as u; assert all(u.find_spec(p) is None for p in hidden); print(sorted(hidden))")
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_backend_gate_hides_only_what_the_run_cannot_use(tmp_path):
    assert _gate(["model=tiny"]) == "['bitsandbytes', 'deepspeed', 'gptqmodel', 'hqq', 'torchao']"
    assert _gate(["model=tiny", "launch=deepspeed_z2"]) == "['bitsandbytes', 'gptqmodel', 'hqq', 'torchao']"
    assert _gate(["model=tiny", "quantization.bit=4"]) == "['deepspeed', 'gptqmodel', 'hqq', 'torchao']"
    assert _gate(["model=tiny", "quantization.bit=4", "quantization.method=hqq"]) == \
        "['bitsandbytes', 'deepspeed', 'gptqmodel', 'torchao']"
    assert _gate(["model=tiny", "train.optim=paged_adamw_8bit"]) == "['deepspeed', 'gptqmodel', 'hqq', 'torchao']"
    assert _gate(["model=tiny", "train.optim=adamw_torch_8bit"]) == "['bitsandbytes', 'deepspeed', 'gptqmodel', 'hqq']"
    assert _gate(["model=tiny", "galore=layerwise", "train.finetuning_type=full"]) == \
        "['deepspeed', 'gptqmodel', 'hqq', 'torchao']"
    assert _gate(["model=tiny"], {"LLMPIPE_IMPORT_ALL": "1"}) == "[]"
    quantized = tmp_path / "prequantized"
    quantized.mkdir()
    (quantized / "config.json").write_text('{"model_type": "llama", "quantization_config": {"quant_method": "bitsandbytes"}}')
    assert _gate([f"model.name_or_path={quantized}"]) == "[]"


def test_trl_fused_head_scores_only_labelled_positions_on_cpu():
    import trl.kernels.chunked_logprob as kernels
    import trl.trainer.utils as trl_utils

    from llmpipe.training.lm_head import score_label_positions_only

    kernel_choice = kernels._use_triton
    score_label_positions_only()
    score_label_positions_only()   # idempotent: one wrapper
    assert trl_utils._use_triton(torch.device("cpu")) is True
    assert getattr(trl_utils._use_triton, "llmpipe_cpu_compact", False)
    assert kernels._use_triton is kernel_choice   # TRL's kernels still pick their own implementation


def test_label_only_lm_head_gives_the_models_own_loss_and_gradients():
    from llmpipe.training.lm_head import LabelOnlyBatches, label_only_head

    feats = _features(lengths=(9, 6, 12), prompt=4)
    model = micro_model(tie_word_embeddings=False)
    plain = PaddingFreeCollator()
    ref_loss, ref_grads = _loss_and_grads(model, plain(feats))
    notes = []
    cfg = SimpleNamespace(train=SimpleNamespace(compute_accuracy=False),
                          model=SimpleNamespace(enable_liger_kernel=False, use_unsloth=False))
    fused = label_only_head(cfg, model, plain, notes.append)
    assert isinstance(fused, LabelOnlyBatches) and notes == []
    batch = fused(feats)
    assert batch["label_only_head"] is True
    n = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    model.zero_grad()
    out = model(**batch, num_items_in_batch=n)
    assert out.logits is None if hasattr(out, "logits") else True
    out.loss.backward()
    assert torch.allclose(out.loss, ref_loss, rtol=1e-5)
    for name, g in ref_grads.items():
        assert torch.allclose(model.get_parameter(name).grad, g, rtol=1e-4, atol=1e-6), name
    capped = micro_model()
    capped.config.final_logit_softcapping = 30.0   # the head is not a plain projection: the model's own forward
    assert label_only_head(cfg, capped, plain, notes.append) is plain and "final_logit_softcapping" in notes[-1]
    assert label_only_head(cfg, micro_model(), plain, notes.append, columns=["input_ids", "labels", "pixel_values"]) \
        is plain and "pixel_values" in notes[-1]
    cfg.train.compute_accuracy = True
    assert label_only_head(cfg, micro_model(), plain, notes.append) is plain and "compute_accuracy" in notes[-1]


def test_wrapped_collators_survive_pickling_for_dataloader_workers():
    import pickle

    from llmpipe.training.lm_head import LabelOnlyBatches

    again = pickle.loads(pickle.dumps(LabelOnlyBatches(PaddingFreeCollator(-7))))
    assert again.label_pad_token_id == -7 and again(_features())["label_only_head"] is True
