"""train.output_dir: after a successful run, the final model the run produced is linked there from the stage
store (or the export folder), so that it is found next to the job's other outputs.

The folder is relative to the job's output directory (Hydra's job folder), or absolute. It receives ``model``
(a full model: the export folder, the merge or quantize stage's model/, the train stage's model/) or ``adapter``
(a LoRA adapter trained on the configured base model), as a symbolic link, or as a copy where links cannot be
made. Nothing the user wrote is ever removed: an existing link of that name is replaced (a link holds no data),
anything else is left as it is and reported.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable


def output_folder(output_dir: str | None, job_dir: Path | None) -> Path | None:
    """Where train.output_dir points: absolute as given, relative to ``job_dir`` (None without a job folder)."""
    if not output_dir:
        return None
    path = Path(output_dir).expanduser()
    if path.is_absolute():
        return path
    return job_dir / path if job_dir is not None else None


def link_final(final: Any, output_dir: str | None, job_dir: Path | None,
               say: Callable[[str], None] = print) -> Path | None:
    """Link the final model ``final`` (an ``infer.model_ref.ModelRef``, or None) into train.output_dir; returns
    the link (or copy) made, None when there was nothing to link or the name was taken."""
    folder = output_folder(output_dir, job_dir)
    if final is None or not getattr(final, "trained", False) or folder is None:
        return None
    name, target = ("adapter", Path(final.adapters[-1])) if final.adapters else ("model", Path(final.model))
    if not target.is_dir():
        return None
    target = target.resolve()
    dest = folder / name
    if dest.is_symlink():
        if Path(os.readlink(dest)) == target:
            return dest
        dest.unlink()   # an earlier run's link: the files it pointed to stay where they are
    elif dest.exists():
        say(f"llmpipe: note: train.output_dir: {dest} already exists and is not a link; the final {name} was not "
            f"linked there (it is at {target})")
        return None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        dest.symlink_to(target, target_is_directory=True)
    except OSError:   # a filesystem without symbolic links
        shutil.copytree(target, dest)
    return dest
