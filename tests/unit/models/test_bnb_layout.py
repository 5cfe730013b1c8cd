"""bitsandbytes' 4-bit layers keep their trainable layout after an eval-mode forward (llmpipe.models.bnb_layout):
on AVX512-BF16 CPUs bitsandbytes would repack them for a bf16 kernel that passes no gradient and cannot be
dequantized. On other CPUs the checks hold as well (bitsandbytes never repacks there)."""
from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")


def test_the_hook_patches_bitsandbytes_when_it_is_imported():
    code = ("from llmpipe.models import bnb_layout; bnb_layout.install(); import bitsandbytes.nn.modules as m; "
            "import bitsandbytes as bnb; layer = bnb.nn.Linear4bit(64, 32, bias=False); "
            "print(m.has_avx512bf16(), layer.support_avx512bf16_for_cpu)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]


def test_after_an_eval_forward_the_layer_still_passes_gradients_and_dequantizes():
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    from llmpipe.models import bnb_layout

    bnb_layout.install()
    torch.manual_seed(0)
    dense = torch.nn.Linear(64, 96, bias=False)
    layer = bnb.nn.Linear4bit(64, 96, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(dense.weight.data.clone(), requires_grad=False, quant_type="nf4")
    layer = layer.to("cpu")   # quantizes
    x = torch.randn(3, 64)
    layer.eval()
    with torch.no_grad():
        evaluated = layer(x)
    assert not getattr(layer.weight.quant_state, "packing_format_for_cpu", False)
    layer.train()
    xg = x.clone().requires_grad_(True)
    out = layer(xg)
    out.sum().backward()
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0
    assert out.dtype == torch.float32 and torch.allclose(out.detach(), evaluated, atol=1e-5)
    weight = F.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    assert weight.shape == (96, 64)
    assert float(torch.nn.functional.cosine_similarity(weight.flatten(), dense.weight.flatten(), dim=0)) > 0.99
