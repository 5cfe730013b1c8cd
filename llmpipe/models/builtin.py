"""The one way llmpipe gets a built-in model's folder: :func:`ensure_builtin` removes what a killed build left
behind, then lets ``tiny.ensure_builtin`` build (or find) the model.

``tiny.ensure_builtin`` builds in ``<models>/.<folder>.tmp-XXXX`` under the lock ``<models>/.<folder>.lock``
and removes that folder when the build fails, but a build killed with SIGKILL (or by the OOM killer) leaves
it forever. ``tiny.py`` cannot change: its bytes are part of the built-in models' identity, so editing it
would change every fingerprint. The clean-up therefore happens here, under the same lock: while this
process holds it nobody else is building that model (every build runs under it), so every temp folder of
that model is a leftover. The lock is released before ``tiny.ensure_builtin`` takes it again (filelock
locks of different FileLock objects on one path do not nest within one process).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from llmpipe.heartbeat import Heartbeat
from llmpipe.models import tiny, zoo


def leftovers(models: Path, folder: str) -> list[Path]:
    """Temp folders of builds of ``folder`` under ``models`` (a live build's one included)."""
    return sorted(p for p in Path(models).glob(f".{folder}.tmp-*") if p.is_dir())


def remove_leftovers(name: str, cache_root: str | Path) -> list[Path]:
    """Remove the temp folders that killed builds of built-in model ``name`` left; returns them."""
    from filelock import FileLock

    models = tiny.models_dir(cache_root)
    folder = tiny.folder_name(name)
    if not leftovers(models, folder):   # the usual case: no lock taken
        return []
    with FileLock(str(models / f".{folder}.lock")):   # the lock tiny.ensure_builtin builds under
        stale = leftovers(models, folder)
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
    return stale


# seconds a first build usually takes on 2 CPU cores (measured: builtin:tiny 40-80 s, pre-training included)
USUAL_BUILD_S = {"builtin:tiny": 60, "builtin:tiny-random": 5, "builtin:bench": 10}


def ensure_builtin(name: str, cache_root: str | Path) -> Path:
    """The folder of built-in model ``name``, built on first use; leftovers of killed builds removed first.
    A first build (a minute for builtin:tiny) says so and shows a heartbeat while it runs."""
    from llmpipe.models import vision_builtin

    if vision_builtin.is_builtin(name):   # builtin:tiny_vl: built on top of builtin:tiny (which is built first)
        ensure_builtin(vision_builtin.BASE, cache_root)
        if not (tiny.models_dir(cache_root) / vision_builtin.folder_name(name) / vision_builtin.COMPLETE).is_file():
            print(f"    building {name} from {vision_builtin.BASE} (offline; a few seconds)", flush=True)
        return vision_builtin.ensure_builtin(name, cache_root)
    if zoo.is_zoo(name):   # builtin:tiny-qwen3 ...: random weights, builtin:tiny-random's tokenizer; seconds
        return zoo.ensure(name, cache_root)
    from llmpipe.models import vlm_zoo

    if vlm_zoo.is_vlm_zoo(name):   # builtin:tiny-llava ...: tiny random vision-language models; seconds
        return vlm_zoo.ensure(name, cache_root)
    from llmpipe.models import audio_builtin

    if audio_builtin.is_builtin(name):   # builtin:tiny-qwen2-audio: an audio tower on builtin:tiny (built first)
        ensure_builtin(audio_builtin.BASE, cache_root)
        return audio_builtin.ensure(name, cache_root)
    remove_leftovers(name, cache_root)
    if (tiny.models_dir(cache_root) / tiny.folder_name(name) / tiny.COMPLETE).is_file():
        return tiny.ensure_builtin(name, cache_root)
    usual = USUAL_BUILD_S.get(name, 60)
    print(f"    building {name} on first use (offline; about {usual} s on 2 CPU cores), "
          f"into {tiny.models_dir(cache_root)}", flush=True)
    t0 = time.monotonic()
    with Heartbeat(f"building {name}", usual):
        path = tiny.ensure_builtin(name, cache_root)
    print(f"    built {name} in {time.monotonic() - t0:.0f} s", flush=True)
    return path
