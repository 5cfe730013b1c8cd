"""model.upcast_lmhead_output reaches every LM head (issue 17): the model's own forward (a hook on the head, also
a reward model's score head), llmpipe's label-only head and TRL's fused head of the DPO family project in fp32."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from llmpipe.models.patches import upcast_lmhead_output  # noqa: E402
from llmpipe.training.lm_head import add_label_only_head, fused_head_in_fp32  # noqa: E402


def _model(cls=transformers.LlamaForCausalLM, **extra):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, **extra)
    return cls(cfg).to(torch.bfloat16).eval()


def _fp32_logprobs(model, ids):
    """Reference: the backbone in bf16, the projection in fp32."""
    hidden = model.model(input_ids=ids).last_hidden_state[:, :-1]
    logits = hidden.float() @ model.lm_head.weight.float().T
    return torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def test_the_model_forward_gets_fp32_logits():
    model = _model()
    ids = torch.tensor([[1, 7, 30, 99, 4]])
    assert model(input_ids=ids).logits.dtype == torch.bfloat16
    assert upcast_lmhead_output(model)
    assert model(input_ids=ids).logits.dtype == torch.float32


def test_a_reward_models_score_head_too():
    model = _model(transformers.LlamaForSequenceClassification, num_labels=1, pad_token_id=0)
    assert upcast_lmhead_output(model)
    assert model(input_ids=torch.tensor([[1, 7, 30]])).logits.dtype == torch.float32


def test_label_only_head_projects_in_fp32():
    ids = torch.tensor([[1, 7, 30, 99, 4, 250, 3, 8]])
    labels = ids.clone()
    plain, upcast = _model(), _model()
    upcast_lmhead_output(upcast)
    for m in (plain, upcast):
        add_label_only_head(m)
    with torch.no_grad():
        expected = -_fp32_logprobs(upcast, ids).mean()
        got_plain = plain(input_ids=ids, labels=labels, label_only_head=True).loss
        got_upcast = upcast(input_ids=ids, labels=labels, label_only_head=True).loss
    assert abs(got_upcast.item() - expected.item()) < 1e-5
    assert abs(got_plain.item() - expected.item()) > abs(got_upcast.item() - expected.item())


def test_trls_fused_head_is_built_in_fp32_while_the_trainer_is():
    import trl.trainer.dpo_trainer as dpo

    ids = torch.tensor([[1, 7, 30, 99, 4, 250, 3, 8]])
    models = {}
    for enabled in (False, True):
        model = _model()
        with fused_head_in_fp32(enabled):
            dpo.add_fused_lm_head(model, outputs=("log_probs",))   # what DPOTrainer.__init__ calls
        models[enabled] = model
    assert dpo.add_fused_lm_head.__name__ == "add_fused_lm_head"   # restored afterwards
    with torch.no_grad():
        expected = _fp32_logprobs(models[True], ids)
        fp32 = models[True](input_ids=ids, labels=ids, fused_lm_head=True).log_probs
        bf16 = models[False](input_ids=ids, labels=ids, fused_lm_head=True).log_probs
    err32 = (fp32[:, : expected.shape[1]].float() - expected).abs().max().item()
    err16 = (bf16[:, : expected.shape[1]].float() - expected).abs().max().item()
    assert err32 < 1e-4 < err16
