"""The CUDA peak memory a stage reports (llmpipe.launch.cuda_memory): nothing without CUDA, the largest
device's peak since the last reset otherwise (a stand-in torch.cuda here; tests/gpu/test_cuda_paths.py checks
the real one and the lock file on a GPU)."""
from __future__ import annotations

import sys
import types

from llmpipe.launch import cuda_memory


class FakeCuda:
    def __init__(self, peaks, initialized=True):
        self.peaks, self.initialized, self.resets = list(peaks), initialized, []

    def is_available(self):
        return True

    def is_initialized(self):
        return self.initialized

    def device_count(self):
        return len(self.peaks)

    def max_memory_allocated(self, device):
        return self.peaks[device]

    def reset_peak_memory_stats(self, device):
        self.resets.append(device)
        self.peaks[device] = 0


def with_torch(monkeypatch, cuda):
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))


def test_peak_is_the_largest_device_in_gib_and_reset_starts_over(monkeypatch):
    cuda = FakeCuda([1 * 2**30, 3 * 2**30 + 2**29])
    with_torch(monkeypatch, cuda)
    assert cuda_memory.peak_gib() == 3.5
    assert cuda_memory.with_peak({"metrics": {}}) == {"metrics": {}, "cuda_peak_gib": 3.5}
    assert cuda_memory.with_peak({"cuda_peak_gib": 1.25}) == {"cuda_peak_gib": 1.25}   # rank 0's own value kept
    cuda_memory.reset()
    assert cuda.resets == [0, 1] and cuda_memory.peak_gib() is None


def test_nothing_without_cuda(monkeypatch):
    with_torch(monkeypatch, FakeCuda([2**30], initialized=False))   # CUDA never touched by the stage
    assert cuda_memory.peak_gib() is None and cuda_memory.with_peak({"a": 1}) == {"a": 1}
    monkeypatch.delitem(sys.modules, "torch")                          # torch not even imported
    cuda_memory.reset()
    assert cuda_memory.peak_gib() is None
