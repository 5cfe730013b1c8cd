"""Building a built-in model's folder once, safely: under a file lock, in a temp folder next to the target, with a
``_COMPLETE`` manifest, then an atomic rename. A killed build's temp folders are removed under the same lock (nobody
else builds while it is held). ``llmpipe.models.tiny`` keeps its own copy of this logic: its bytes cannot change."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

COMPLETE = "_COMPLETE"


def build_once(models: Path, folder: str, build: Callable[[Path], None], manifest: dict) -> Path:
    """``models / folder``, built by ``build(tmp)`` when it has no ``_COMPLETE`` marker yet."""
    from filelock import FileLock

    final = Path(models) / folder
    if (final / COMPLETE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{folder}.lock")):
        if (final / COMPLETE).is_file():
            return final
        shutil.rmtree(final, ignore_errors=True)   # a leftover without marker: never trusted
        for stale in final.parent.glob(f".{folder}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.tmp-", dir=final.parent))
        try:
            build(tmp)
            (tmp / COMPLETE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            for f in tmp.iterdir():
                f.chmod(0o644)
            tmp.chmod(0o755)   # mkdtemp makes 0700; the cache may be shared
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def save_quietly(model, out: Path) -> None:
    """``model.save_pretrained(out)`` without transformers' progress bars (a build's console stays quiet)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
