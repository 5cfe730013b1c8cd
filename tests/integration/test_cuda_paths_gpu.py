"""The CUDA paths the GPU check (bench/gpu_check.py) relies on, on a real GPU: llmpipe's variable-length SDPA runs
padding-free rows on FlashAttention's kernel and matches each example attended alone; padding-free batches engage
on a bf16 model on CUDA; a training run reports its stage's CUDA peak memory (progress line, summary, lock
file); PPO puts every model (policy, reference, reward model, value head) on the GPU under bf16 autocast.
Skipped without CUDA (CI has none): run by `make gpu-check` (docs/gpu.md)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

from pref_support import cli, last_lock

LENGTHS = (5, 11, 3)   # three examples packed into one row


def packed(heads: int, kv_heads: int, dim: int = 64):
    g = torch.Generator(device="cuda").manual_seed(0)
    t = sum(LENGTHS)
    q, k, v = (torch.randn(1, h, t, dim, device="cuda", dtype=torch.bfloat16, generator=g)
               for h in (heads, kv_heads, kv_heads))
    pos = torch.cat([torch.arange(n) for n in LENGTHS]).unsqueeze(0).cuda()
    pos.llmpipe_packed = True
    return q, k, v, pos


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (14, 2)])   # MHA and Qwen2.5-0.5B's GQA ratio
def test_varlen_sdpa_runs_on_flash_and_matches_each_example_alone(heads, kv_heads):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from llmpipe.models.varlen_attention import varlen_sdpa_forward

    q, k, v, pos = packed(heads, kv_heads)
    module = SimpleNamespace(training=False, sliding_window=None)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):   # raises "No available kernel" if flash cannot take it
        out, _ = varlen_sdpa_forward(module, q, k, v, None, position_ids=pos)
    assert out.shape == (1, sum(LENGTHS), heads, q.shape[-1]) and out.dtype == torch.bfloat16
    start = 0
    for n in LENGTHS:   # each example alone, fp32 math kernel: the reference
        sl = slice(start, start + n)
        ref = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, sl].float(), k[:, :, sl].float(), v[:, :, sl].float(), is_causal=True,
            enable_gqa=heads != kv_heads).transpose(1, 2)
        assert torch.allclose(out[:, sl].float(), ref, atol=2e-2, rtol=2e-2), (out[:, sl].float() - ref).abs().max()
        start += n


def test_padding_free_engages_on_a_bf16_model_on_cuda():
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmpipe.training.padding_free import decide

    cfg = LlamaConfig(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=256, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
    said = []
    run_cfg = SimpleNamespace(train=SimpleNamespace(padding_free=None), model=SimpleNamespace())
    assert decide(run_cfg, model, said.append) is True, said   # the isolation check passes in bf16 on CUDA
    assert model.config._attn_implementation == "llmpipe_varlen_sdpa"
    ids = torch.randint(0, 512, (1, 19), device="cuda")
    pos = torch.cat([torch.arange(8), torch.arange(11)]).unsqueeze(0).cuda()
    with torch.no_grad():
        row = model(input_ids=ids, position_ids=pos).logits.float()
        alone = model(input_ids=ids[:, 8:]).logits.float()   # the second example by itself (padded path: SDPA)
    assert (row[:, 8:] - alone).abs().max() / alone.abs().max() < 3e-2


SFT = ["model=tiny", "train.stage=sft", "train.do_train=true", "train.finetuning_type=lora", "data.dataset=demo_sft",
       "train.max_steps=3", "train.bf16=true", "train.save_strategy=no", "run.sample=false"]


def test_sft_on_cuda_reports_the_stage_peak_memory(tmp_path):
    proc = cli(tmp_path, tmp_path / "store", *SFT)
    out = proc.stdout
    assert "padding-free batches" in out and "(peak CUDA memory" in out and "peak CUDA" in out.split("summary")[-1]
    stages = last_lock(tmp_path)["stages"]
    assert stages["train"]["cuda_peak_gib"] > 0
    assert "cuda_peak_gib" not in stages["load"]   # tokenizing never touches the GPU


def test_ppo_puts_every_model_on_the_gpu(tmp_path):
    # full fine-tuning: a separate reference model; a separate full reward model; the value head on the policy
    proc = cli(tmp_path, tmp_path / "store", "model=tiny", "train.stage=ppo", "train.do_train=true",
               "train.finetuning_type=full", "data.dataset=demo_sft", "ppo.reward_model=builtin:tiny",
               "ppo.reward_model_type=full", "train.max_steps=2", "train.per_device_train_batch_size=4",
               "generate.max_new_tokens=8", "train.bf16=true", "train.save_steps=1000", "run.sample=false")
    out = proc.stdout + proc.stderr
    assert "PPO on cuda" in out and "mixed precision: bf16" in out
    assert "Expected all tensors to be on the same device" not in out
    train = last_lock(tmp_path)["stages"]["train"]
    assert train["status"] == "ran" and train["cuda_peak_gib"] > 0
