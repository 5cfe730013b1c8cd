"""llmpipe.training.cpu_logprobs: TRL's fused-head kernel on the CPU in fewer passes — the same outputs and gradients
as ``trl.kernels.ChunkedLogProbFunction`` (bit-identical with one vocabulary tile, within float error with more), and
TRL's fused head calls it for CPU tensors once installed."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from trl.kernels import ChunkedLogProbFunction as TrlKernel

from llmpipe.training import cpu_logprobs
from llmpipe.training.cpu_logprobs import CpuLogProbFunction

ALL = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
DPO = ("log_probs", "entropy", "mean_logits", "is_top1")   # what TRL's DPOTrainer asks of its head


def _run(kernel, data, temperature, chunk, softcap, scale, outputs, grads=("log_probs", "entropy")):
    hidden, weight, bias, targets = (None if x is None else x.clone() for x in data)
    leaves = [x.requires_grad_() for x in (hidden, weight, bias) if x is not None]
    out = kernel.apply(hidden, weight, bias, targets, temperature, chunk, softcap, scale, outputs)
    n = hidden.shape[0]
    loss = 0
    if "log_probs" in grads:
        loss = loss + (out[0] * torch.linspace(-1, 1, n)).sum()
    if "entropy" in grads and out[1] is not None:
        loss = loss + (out[1] * torch.linspace(1, 2, n)).sum()
    loss.backward()
    return out, [x.grad for x in leaves]


def _data(n=96, hidden=32, vocab=1024, bias=False, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, hidden, generator=g).to(dtype), (torch.randn(vocab, hidden, generator=g) * 0.3).to(dtype),
            torch.randn(vocab, generator=g).to(dtype) if bias else None, torch.randint(0, vocab, (n,), generator=g))


@pytest.mark.parametrize("temperature,softcap,scale,bias", [
    (1.0, None, 1.0, False),       # a plain head (Llama, Qwen)
    (0.7, 30.0, 0.5, True),        # soft-capped, scaled logits with a bias (Gemma 2-like) and a sampling temperature
    (1.0, None, 0.125, False),     # scaled logits (Cohere, Granite)
])
def test_one_vocabulary_tile_is_bit_identical_to_trl(temperature, softcap, scale, bias):
    data = _data(bias=bias)
    want, want_grads = _run(TrlKernel, data, temperature, 32768, softcap, scale, ALL)
    got, got_grads = _run(CpuLogProbFunction, data, temperature, 32768, softcap, scale, ALL)
    for name, a, b in zip(ALL, want, got):
        assert torch.equal(a, b), name
    for a, b in zip(want_grads, got_grads):
        assert torch.equal(a, b)


def test_requested_outputs_only_and_either_gradient_alone():
    data = _data()
    for outputs in (("log_probs",), DPO):
        for grads in (("log_probs",), ("entropy",)):
            if "entropy" in grads and "entropy" not in outputs:
                continue
            want, want_grads = _run(TrlKernel, data, 1.0, 32768, None, 1.0, outputs, grads)
            got, got_grads = _run(CpuLogProbFunction, data, 1.0, 32768, None, 1.0, outputs, grads)
            assert [x is None for x in got] == [x is None for x in want]
            assert all(torch.equal(a, b) for a, b in zip(want, got) if a is not None)
            assert all(torch.equal(a, b) for a, b in zip(want_grads, got_grads))


def test_bf16_inputs_and_cpu_autocast_compute_as_trl_does():
    data = _data(bias=True, dtype=torch.bfloat16)
    want, want_grads = _run(TrlKernel, data, 1.0, 32768, None, 1.0, DPO)
    got, got_grads = _run(CpuLogProbFunction, data, 1.0, 32768, None, 1.0, DPO)
    assert all(torch.equal(a, b) for a, b in zip(want, got) if a is not None)
    assert all(torch.equal(a, b) and a.dtype == torch.bfloat16 for a, b in zip(want_grads, got_grads))
    fp32 = _data(bias=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, want_grads = _run(TrlKernel, fp32, 1.0, 32768, None, 1.0, DPO)
        got, got_grads = _run(CpuLogProbFunction, fp32, 1.0, 32768, None, 1.0, DPO)
    assert all(torch.equal(a, b) for a, b in zip(want, got) if a is not None)
    assert all(torch.equal(a, b) for a, b in zip(want_grads, got_grads))


def test_many_vocabulary_tiles_and_token_chunks_agree_within_float_error(monkeypatch):
    """TRL folds vocabulary tiles with an online softmax; llmpipe sums the whole vocabulary of a token chunk at once,
    in chunks of at most CHUNK_ELEMENTS logits (here 7 tokens, so the gradients accumulate over 14 chunks)."""
    data = _data(vocab=1500, bias=True)
    monkeypatch.setattr(cpu_logprobs, "CHUNK_ELEMENTS", 1500 * 7)
    want, want_grads = _run(TrlKernel, data, 0.9, 512, 20.0, 1.0, ALL)   # 3 vocabulary tiles
    got, got_grads = _run(CpuLogProbFunction, data, 0.9, 512, 20.0, 1.0, ALL)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-5)
    for a, b in zip(want[1:4], got[1:4]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[4], want[4])
    for a, b in zip(want_grads, got_grads):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_is_top1_is_the_first_maximum():
    """TRL counts a target as the top-1 token only when no earlier token ties it."""
    hidden = torch.eye(4)
    weight = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 0]])   # tokens 0 and 1 tie
    targets = torch.tensor([1, 2, 0, 3])   # rows 2 and 3: all four logits tie, so only token 0 is the top-1
    for kernel in (TrlKernel, CpuLogProbFunction):
        top1 = kernel.apply(hidden, weight, None, targets, 1.0, 32768, None, 1.0, ALL)[4]
        assert top1.tolist() == [False, True, True, False], kernel


def test_trl_fused_head_calls_it_on_cpu_only(monkeypatch):
    import trl.trainer.utils as trl_utils

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", TrlKernel)
    cpu_logprobs.use_on_cpu()
    cpu_logprobs.use_on_cpu()   # idempotent: one wrapper
    installed = trl_utils._ChunkedLogProbFunction
    assert installed.llmpipe_cpu and installed.trl_kernel is TrlKernel
    calls = []
    monkeypatch.setattr(CpuLogProbFunction, "apply", staticmethod(lambda *a: calls.append("llmpipe")))
    monkeypatch.setattr(TrlKernel, "apply", staticmethod(lambda *a: calls.append("trl")))
    installed.apply(torch.zeros(2, 4), torch.zeros(8, 4))
    installed.apply(torch.zeros(2, 4, device="meta"), torch.zeros(8, 4, device="meta"))
    assert calls == ["llmpipe", "trl"]


def test_a_dpo_model_with_trls_fused_head_scores_the_same_through_it(monkeypatch):
    """End to end through ``add_fused_lm_head``: a tiny Llama's per-token log-probs, entropy and gradients are those
    of TRL's own kernel."""
    transformers = pytest.importorskip("transformers")
    import trl.trainer.utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2)
    model = transformers.LlamaForCausalLM(cfg)
    add_fused_lm_head(model, outputs=DPO)
    ids = torch.randint(0, 300, (2, 12))
    labels = ids.masked_fill(torch.arange(12) < 5, -100)
    results = []
    for kernel in ("trl", "llmpipe"):
        monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", TrlKernel)
        if kernel == "llmpipe":
            cpu_logprobs.use_on_cpu()
        model.zero_grad()
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        (out.log_probs.sum() + out.entropy.sum()).backward()
        results.append((out.log_probs.detach(), out.entropy.detach(),
                        [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (lp1, ent1, g1), (lp2, ent2, g2) = results
    assert torch.equal(lp1, lp2) and torch.equal(ent1, ent2)
    assert len(g1) == len(g2) > 0 and all(torch.equal(a, b) for a, b in zip(g1, g2))
