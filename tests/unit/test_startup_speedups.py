"""Job folder names stay valid for any override list; Hydra's start-up shortcuts keep Hydra's answers."""
from __future__ import annotations

import subprocess
import sys

from llmpipe.config.resolvers import MAX_DIRNAME, _job_dirname
from llmpipe.hydra_speedups import _mode_named, type_hints


def test_job_dirname_short_long_and_distinct():
    assert _job_dirname(3, "lora.rank=8,pref.beta=0.1") == "3_lora.rank=8,pref.beta=0.1"
    assert _job_dirname(0, "") == "0"
    assert _job_dirname(1, "data.dataset_dir=/a/b") == "1_data.dataset_dir=_a_b"
    long_a = _job_dirname(0, ",".join(f"k{i}=v{i}" for i in range(80)))
    long_b = _job_dirname(0, ",".join(f"k{i}=v{i}" for i in range(81)))
    assert len(long_a.encode()) <= MAX_DIRNAME and long_a != long_b and "/" not in long_a
    assert len(_job_dirname(2, "数据=" + "很长" * 200).encode()) <= MAX_DIRNAME


def test_mode_override_detection_and_type_hints():
    assert _mode_named(["hydra.mode=MULTIRUN"]) and _mode_named(["++hydra.mode=RUN"])
    assert not _mode_named(["-m", "lora.rank=8"])

    class A:
        x: int

    assert type_hints(A) == {"x": int} and type_hints(A) is type_hints(A)


def test_help_lists_groups_and_mode_override_still_multiruns(tmp_path):
    help_ = subprocess.run([sys.executable, "-m", "llmpipe", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert help_.returncode == 0 and "lora:" in help_.stdout and "launch:" in help_.stdout
    proc = subprocess.run([sys.executable, "-m", "llmpipe", "hydra.mode=MULTIRUN", "+recipe=demo", "run.dry_run=true",
                           "lora.rank=2,4"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "multirun").glob("*/*/[01]_*"))) == 2   # hydra.mode chose multirun: two jobs
