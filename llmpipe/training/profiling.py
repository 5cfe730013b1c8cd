"""Profiling a training run (LLaMA-Factory's profiler arguments, under train.*).

* ``train.enable_torch_profiler``: ``torch.profiler`` around the training steps, on the schedule
  wait/warmup/active/repeat (``train.profiler_*_steps``, ``train.profiler_repeat``; repeat 0 = until the end),
  recording shapes, memory and stacks as asked; each cycle's trace is written for TensorBoard's profiler plugin
  (and chrome://tracing) to ``train.profiler_output_dir``, by default ``profiler/`` in the stage's checkpoints
  folder.
* ``train.profile_modules``: forward time per module whose name matches one of the patterns (fnmatch, e.g.
  ``model.layers.*.mlp``), measured with CUDA events on a GPU and the wall clock on the CPU; the totals are
  logged at the end and written to ``module_times.json`` next to the traces.

Both are callbacks of the Trainer (llmpipe.training.progress.trainer_callbacks); PPO's loop has no Trainer and
pre-flight refuses them there.
"""
from __future__ import annotations

import fnmatch
import json
import time
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback


def _output_dir(t: Any, args) -> Path:
    return Path(str(t.profiler_output_dir)).expanduser() if t.profiler_output_dir else Path(args.output_dir) / "profiler"


class TorchProfilerCallback(TrainerCallback):
    """torch.profiler over the training steps, one trace per active cycle."""

    def __init__(self, t: Any, log: Callable[[str], None]):
        self.settings = {"wait": int(t.profiler_wait_steps), "warmup": int(t.profiler_warmup_steps),
                         "active": int(t.profiler_active_steps), "repeat": int(t.profiler_repeat),
                         "record_shapes": bool(t.profiler_record_shapes),
                         "profile_memory": bool(t.profiler_profile_memory), "with_stack": bool(t.profiler_with_stack),
                         "output_dir": t.profiler_output_dir}
        self.t, self.log, self.prof, self.out = t, log, None, None

    def on_train_begin(self, args, state, control, **kwargs):
        import torch
        from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

        s = self.settings
        self.out = _output_dir(self.t, args)
        self.out.mkdir(parents=True, exist_ok=True)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        self.prof = profile(activities=activities,
                            schedule=schedule(wait=s["wait"], warmup=s["warmup"], active=s["active"], repeat=s["repeat"]),
                            on_trace_ready=tensorboard_trace_handler(str(self.out)), record_shapes=s["record_shapes"],
                            profile_memory=s["profile_memory"], with_stack=s["with_stack"])
        self.prof.__enter__()
        self.log(f"torch profiler: wait {s['wait']}, warm up {s['warmup']}, record {s['active']} steps "
                 f"x {s['repeat'] or 'every'} cycle(s) -> {self.out}")

    def on_step_end(self, args, state, control, **kwargs):
        if self.prof is not None:
            self.prof.step()

    def on_train_end(self, args, state, control, **kwargs):
        if self.prof is None:
            return
        self.prof.__exit__(None, None, None)
        self.prof = None
        traces = sorted(p.name for p in self.out.glob("*.pt.trace.json*"))
        self.log(f"torch profiler: {len(traces)} trace(s) in {self.out}" if traces else
                 f"torch profiler: no trace written (training ended before the first active step; "
                 f"train.profiler_wait_steps + warmup_steps = {self.settings['wait'] + self.settings['warmup']})")


class ModuleTimesCallback(TrainerCallback):
    """Forward time of the modules whose names match train.profile_modules."""

    def __init__(self, t: Any, log: Callable[[str], None]):
        self.patterns = list(t.profile_modules)
        self.settings = {"patterns": self.patterns}
        self.t, self.log = t, log
        self.totals: dict[str, list[float]] = {}
        self.handles: list = []
        self.pending: list = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import torch

        cuda = torch.cuda.is_available()
        names = [n for n, _ in model.named_modules() if n and any(fnmatch.fnmatch(n, p) for p in self.patterns)]
        if not names:
            self.log(f"train.profile_modules: no module matches {', '.join(self.patterns)} (names look like "
                     f"{', '.join(n for n, _ in list(model.named_modules())[1:4])})")
        modules = dict(model.named_modules())
        for name in names:
            self.totals[name] = [0.0, 0]

            def pre(mod, inputs, name=name):
                if cuda:
                    start = torch.cuda.Event(enable_timing=True)
                    start.record()
                    mod._llmpipe_t0 = start
                else:
                    mod._llmpipe_t0 = time.perf_counter()

            def post(mod, inputs, output, name=name):
                t0 = getattr(mod, "_llmpipe_t0", None)
                if t0 is None:
                    return
                if cuda:
                    end = torch.cuda.Event(enable_timing=True)
                    end.record()
                    self.pending.append((name, t0, end))
                else:
                    self.totals[name][0] += (time.perf_counter() - t0) * 1000
                self.totals[name][1] += 1

            self.handles += [modules[name].register_forward_pre_hook(pre), modules[name].register_forward_hook(post)]

    def on_step_end(self, args, state, control, **kwargs):
        if self.pending:
            import torch

            torch.cuda.synchronize()
            for name, start, end in self.pending:
                self.totals[name][0] += start.elapsed_time(end)
            self.pending.clear()

    def on_train_end(self, args, state, control, **kwargs):
        self.on_step_end(args, state, control)
        for h in self.handles:
            h.remove()
        self.handles.clear()
        rows = {name: {"total_ms": round(ms, 3), "calls": n, "mean_ms": round(ms / n, 4) if n else None}
                for name, (ms, n) in sorted(self.totals.items(), key=lambda kv: -kv[1][0])}
        out = _output_dir(self.t, args)
        out.mkdir(parents=True, exist_ok=True)
        (out / "module_times.json").write_text(json.dumps(rows, indent=1))
        for name, row in list(rows.items())[:10]:
            self.log(f"module {name}: {row['total_ms']:.1f} ms in {row['calls']} forward calls")
        self.log(f"module times of {len(rows)} module(s) in {out / 'module_times.json'}")


def profiling_callbacks(obj: Any, log: Callable[[str], None]) -> list:
    t = obj.train
    out: list = []
    if getattr(t, "enable_torch_profiler", False):
        out.append(TorchProfilerCallback(t, log))
    if getattr(t, "profile_modules", None):
        out.append(ModuleTimesCallback(t, log))
    return out
