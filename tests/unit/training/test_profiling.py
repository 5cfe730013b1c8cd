"""The profilers of a training run (llmpipe.training.profiling): torch.profiler writes a trace per active cycle,
and train.profile_modules times the forward calls of the matching modules, in a real Trainer run."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from llmpipe.training.profiling import ModuleTimesCallback, TorchProfilerCallback, profiling_callbacks  # noqa: E402


def _train(tmp_path, callbacks, steps=4):
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2))
    rows = [{"input_ids": list(range(i, i + 8)), "labels": list(range(i, i + 8))} for i in range(8)]
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "checkpoints"), max_steps=steps,
                                          per_device_train_batch_size=2, use_cpu=True, report_to="none",
                                          save_strategy="no", disable_tqdm=True)
    transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=callbacks).train()


def _t(**kw):
    base = dict(enable_torch_profiler=True, profiler_output_dir=None, profiler_wait_steps=1, profiler_warmup_steps=1,
                profiler_active_steps=1, profiler_repeat=1, profiler_record_shapes=True, profiler_profile_memory=True,
                profiler_with_stack=False, profile_modules=None)
    return SimpleNamespace(**{**base, **kw})


def test_torch_profiler_writes_one_trace_per_cycle(tmp_path):
    lines = []
    _train(tmp_path, [TorchProfilerCallback(_t(profiler_repeat=2), lines.append)], steps=6)
    traces = list((tmp_path / "checkpoints" / "profiler").glob("*.pt.trace.json*"))
    assert len(traces) == 2, lines
    assert "aten::mm" in traces[0].read_text() or "aten::addmm" in traces[0].read_text()
    assert any("2 trace(s)" in ln for ln in lines)


def test_a_run_shorter_than_the_schedule_says_so(tmp_path):
    lines = []
    _train(tmp_path, [TorchProfilerCallback(_t(profiler_wait_steps=5, profiler_output_dir=str(tmp_path / "p")),
                                            lines.append)], steps=2)
    assert any("no trace written" in ln for ln in lines)


def test_module_times_cover_the_matching_modules(tmp_path):
    lines = []
    _train(tmp_path, [ModuleTimesCallback(_t(profile_modules=["model.layers.*.mlp"]), lines.append)], steps=3)
    times = json.loads((tmp_path / "checkpoints" / "profiler" / "module_times.json").read_text())
    assert set(times) == {"model.layers.0.mlp", "model.layers.1.mlp"}
    assert all(row["calls"] == 3 and row["total_ms"] > 0 for row in times.values())   # one forward per step


def test_nothing_is_added_when_both_are_off():
    assert profiling_callbacks(SimpleNamespace(train=_t(enable_torch_profiler=False)), print) == []
