"""The console pieces of issue 20, without a run: library warnings once and attributed, the rest in the log
file; the heartbeat of silent work; the final loss and the loss plot of short runs; PEFT's probes after
transformers has only asked whether peft is installed."""
from __future__ import annotations

import io
import logging
import subprocess
import sys
import types

import pytest

from llmpipe.models import quiet
from llmpipe.heartbeat import Heartbeat
from llmpipe.training.plot import plot_loss, save_loss_plot
from llmpipe.training.progress import ProgressCallback


@pytest.fixture
def restored_logging():
    """route_library_logs changes process-wide state: give it back to the rest of the session."""
    import warnings

    names = [*quiet.LIBRARIES, "llmpipe.library", "torch.utils._pytree"]
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate, logging.getLogger(n).level)
             for n in names}
    show, filters = warnings.showwarning, list(warnings.filters)
    for n in names:   # as in a fresh process: an in-process run earlier in this worker may have raised their levels
        logging.getLogger(n).setLevel(logging.NOTSET)
    yield
    for n, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level
    warnings.showwarning = show
    warnings.filters[:] = filters
    quiet._CONSOLE.seen.clear()


def test_library_warnings_once_attributed_and_in_full_in_the_log(tmp_path, capsys, restored_logging):
    root = logging.getLogger()
    fh = logging.FileHandler(tmp_path / "llmpipe.log")
    root.addHandler(fh)
    try:
        quiet.route_library_logs()
        assert str(tmp_path / "llmpipe.log") in quiet.log_files()
        lib = logging.getLogger("transformers.trainer_utils")
        for _ in range(16):
            lib.warning("Token indices sequence length is longer than the specified maximum (300 > 256)")
            lib.warning("something a user should know")
        logging.getLogger("torchao").warning("Failed to load /x/_C.so: libcudart.so.12")
        quiet._showwarning(FutureWarning("old api"), FutureWarning, "/v/site-packages/peft/x.py", 3)
        quiet._showwarning(UserWarning("odd input"), UserWarning, "/v/site-packages/trl/y.py", 4)
    finally:
        root.removeHandler(fh)
        fh.close()
    err = capsys.readouterr().err
    assert err.splitlines() == ["llmpipe: warning from transformers: something a user should know",
                                "llmpipe: warning from trl: UserWarning: odd input (/v/site-packages/trl/y.py:4)"]
    log = (tmp_path / "llmpipe.log").read_text()
    assert log.count("Token indices") == 16 and "Failed to load" in log and "old api" in log


def test_heartbeat_plain_lines_with_an_eta(monkeypatch):
    monkeypatch.setattr("llmpipe.heartbeat.HEARTBEAT_S", 0.05)
    out = io.StringIO()
    with Heartbeat("building builtin:tiny", 60, stream=out):
        import time
        time.sleep(0.2)
    lines = out.getvalue().splitlines()
    assert lines and all(ln.startswith("    building builtin:tiny ... ") and "s left" in ln for ln in lines)
    assert "longer than the usual" in Heartbeat("x", 10).line(12)
    assert Heartbeat("tokenizing", None).line(3) == "    tokenizing ... 3 s"


def test_the_last_step_always_logs_and_the_line_has_an_eta():
    logged = []
    cb = ProgressCallback(logged.append)
    state = types.SimpleNamespace(global_step=0, max_steps=4, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    control = types.SimpleNamespace(should_log=False)
    for step in (1, 2, 3):
        state.global_step = step
        cb.on_step_end(None, state, control)
        assert control.should_log is False        # logging_steps (say 10) decides, as before
    cb.on_log(None, state, control, logs={"loss": 1.5})
    assert "eta" in logged[-1]
    state.global_step = 4
    cb.on_step_end(None, state, control)
    assert control.should_log is True
    cb.on_log(None, state, control, logs={"loss": 1.25})
    assert logged[-1].startswith("step 4/4  loss=1.25") and "eta" not in logged[-1]


def test_loss_plot_of_one_point_and_the_reason_when_there_is_none(tmp_path):
    assert plot_loss([{"step": 3, "loss": 1.0}], tmp_path / "a.png") == tmp_path / "a.png"
    assert (tmp_path / "a.png").stat().st_size > 0
    said = []
    assert save_loss_plot([{"step": 3, "train_runtime": 1.0}], tmp_path / "b.png", "t", said.append) is None
    assert said and "no loss" in said[0] and not (tmp_path / "b.png").exists()


def test_peft_is_patched_after_transformers_only_probed_for_it():
    """transformers' is_peft_available() asks importlib.util.find_spec("peft") long before peft is imported (the
    train stage of a resumed run); the probe hook must survive that question, else gptqmodel's banner shows."""
    script = """
import sys, importlib.util
from llmpipe.models.quiet import quiet_libraries
quiet_libraries()
assert importlib.util.find_spec("peft") is not None
import peft.tuners.lora.awq as awq
print("wrapped:", getattr(awq.is_gptqmodel_available, "llmpipe_wrapped", False))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "wrapped: True" in out.stdout, out.stderr[-2000:]


def test_a_long_evaluation_shows_batches_and_an_eta(monkeypatch):
    monkeypatch.setattr("llmpipe.training.progress.EVAL_EVERY_S", 0)
    logged = []
    cb = ProgressCallback(logged.append)
    state = types.SimpleNamespace(global_step=5, max_steps=10, is_world_process_zero=True)
    for _ in range(3):
        cb.on_prediction_step(None, state, None, eval_dataloader=[0] * 4)
    cb.on_evaluate(None, state, None)
    assert logged[-1].startswith("evaluating: batch 3/4") and "eta" in logged[-1]
    assert cb.eval_started is None


def test_importing_torchao_and_bitsandbytes_writes_nothing_to_the_console(tmp_path):
    """torchao's "Failed to load ...so" and "no triton", torch's pytree notes and bitsandbytes' CPU kernel warning
    are not failures of a run: the log file only."""
    script = f"""
import logging
logging.getLogger().addHandler(logging.FileHandler({str(tmp_path / 'llmpipe.log')!r}))
logging.getLogger().setLevel(logging.INFO)
from llmpipe.models.quiet import quiet_libraries
quiet_libraries()
import importlib.util
for name in ("torchao", "bitsandbytes"):
    if importlib.util.find_spec(name) is not None:
        __import__(name)
print("done")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "done" and out.stderr.strip() == "", out.stderr[-2000:]


def test_an_unlisted_library_on_the_root_console_handler_is_shown_once(restored_logging, capsys):
    root = logging.getLogger()
    console = logging.StreamHandler(sys.stdout)          # what Hydra's job logging puts on the root logger
    root.addHandler(console)
    try:
        quiet.route_library_logs()
        for _ in range(3):
            logging.getLogger("somelib.sub").warning("careful")
        logging.getLogger("llmpipe.x").warning("own line")
    finally:
        root.removeHandler(console)
    out, err = capsys.readouterr()
    assert "own line" in out and "careful" not in out
    assert err.splitlines() == ["llmpipe: warning from somelib: careful"]


def test_a_warning_from_llmpipe_itself_shows_as_python_shows_it(restored_logging, capsys):
    quiet.route_library_logs()
    quiet._showwarning(UserWarning("mine"), UserWarning, "/work/llmpipe/x.py", 7)
    assert capsys.readouterr().err == "/work/llmpipe/x.py:7: UserWarning: mine\n"
