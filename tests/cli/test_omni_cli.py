"""vision.use_audio_in_video through the real CLI on a model that reads no audio inside videos (Qwen2-VL,
model=tiny_vl): exit 2 before anything is written, the key and the family named, no traceback."""
from __future__ import annotations

import subprocess
import sys


def test_use_audio_in_video_on_qwen2_vl_exits_2_naming_the_family(tmp_path, cli_env):
    out = subprocess.run([sys.executable, "-m", "llmpipe", "model=tiny_vl", "data.dataset=vlm_motion",
                          "data.template=chatml", "train.do_train=true", "vision.use_audio_in_video=true"],
                         cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=120, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 2, f"rc={out.returncode}\n{text}"
    assert "Traceback" not in text, text
    problems = [ln for ln in out.stderr.splitlines() if ln.strip().startswith("x ")]
    assert any("vision.use_audio_in_video" in ln for ln in problems), out.stderr
    assert "qwen2_vl" in out.stderr and "Qwen2.5-Omni" in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == [], f"something was written: {sorted(p.name for p in tmp_path.rglob('*'))}"
