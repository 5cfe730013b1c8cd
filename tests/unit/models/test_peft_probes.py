"""PEFT wraps layers of a plain model without importing gptqmodel (a 2 s import that prints a banner and
changes environment variables), and still sees the back-end once it has been imported."""
from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from llmpipe.models.quiet import quiet_libraries
quiet_libraries()
import torch
from peft import LoraConfig, get_peft_model
import peft.tuners.lora.gptq as g
model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(4, 4)), LoraConfig(target_modules=["0"]))
assert type(model.base_model.model[0]).__name__ == "Linear" and hasattr(model.base_model.model[0], "lora_A")
print("imported:", "gptqmodel" in sys.modules)
print("probe before:", g.is_gptqmodel_available())
print("MARK", flush=True)
print("MARK", file=sys.stderr, flush=True)
try:
    import gptqmodel  # noqa: F401
except ImportError:
    print("probe after: absent")
else:
    print("probe after:", g.is_gptqmodel_available())
"""


def test_plain_lora_does_not_import_gptqmodel():
    pytest.importorskip("peft")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "imported: False" in proc.stdout and "probe before: False" in proc.stdout
    assert "GPT-QModel" not in proc.stdout.split("MARK")[0] + proc.stderr.split("MARK")[0]
    assert "probe after: True" in proc.stdout or "probe after: absent" in proc.stdout
