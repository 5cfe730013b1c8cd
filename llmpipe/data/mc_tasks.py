"""Multiple-choice tasks (``eval.task``): where the questions of a task come from.

A task is ``<name>_<split>`` as in LLaMA-Factory (``mmlu_test``, ``ceval_validation``). ``<name>`` is a folder
``<eval.task_dir>/<name>`` in LLaMA-Factory's on-disk layout, or the bundled ``mc_demo``
(llmpipe.data.mc_synthetic). The layout: ``mapping.json`` (subject -> {name, category}) and, per subject, CSV
files of a dev split (the few-shot pool) and of val/test splits, extracted or inside ``<name>.zip``, at any of
``[data/]<split>/<subject>_<split>.csv`` (MMLU, C-Eval) or ``<split>/<subject>.csv`` (CMMLU). A file with a
header row names its columns (question, A-D, answer; C-Eval's id and CMMLU's index column are skipped); one
without is MMLU's question, A, B, C, D, answer.

The prompt: llmpipe.data.mc_prompt.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path

from llmpipe.data.errors import DataError
from llmpipe.data.mc_prompt import Question, Subject

BUNDLED = ("mc_demo",)
# the split a task name ends with -> the file stem of that split
SPLITS = {"test": "test", "validation": "val"}
def parse_task(task: str) -> tuple[str, str]:
    """(name, split) of ``<name>_<split>``; ValueError with the reason."""
    name, _, split = str(task).rpartition("_")
    if not name or split not in SPLITS:
        raise ValueError(f"a task is <name>_<split> with <split> one of {', '.join(SPLITS)} (e.g. mmlu_test,"
                         " ceval_validation, mc_demo_test)")
    return name, split


def task_folder(name: str, task_dir: str | Path) -> Path | None:
    """``<task_dir>/<name>`` when it holds a mapping.json (a local task), else None."""
    root = Path(task_dir).expanduser() / name
    return root if (root / "mapping.json").is_file() else None


def locate(task: str, task_dir: str | Path) -> tuple[str, str, Path | None]:
    """(name, split, folder) of a task; folder None = bundled. ValueError when it is neither."""
    name, split = parse_task(task)
    folder = task_folder(name, task_dir)
    if folder is None and name not in BUNDLED:
        raise ValueError(f"no task folder {Path(task_dir) / name} with a mapping.json, and {name!r} is not bundled"
                         f" ({', '.join(BUNDLED)})")
    return name, split, folder


# --------------------------------------------------------------------------------------------- reading files
class _Files:
    """The CSV files of a task folder: extracted, or inside ``<name>.zip`` (relative posix path -> text)."""

    def __init__(self, root: Path):
        self.root = root
        csvs = sorted(p for p in root.rglob("*.csv") if p.is_file())
        self.zip = None
        if csvs:
            self.names = {p.relative_to(root).as_posix(): p for p in csvs}
        else:
            archive = root / f"{root.name}.zip"
            if not archive.is_file():
                raise DataError(f"task folder {root} has no CSV files and no {archive.name}")
            self.zip = zipfile.ZipFile(archive)
            self.names = {n: n for n in self.zip.namelist() if n.endswith(".csv")}

    def find(self, subject: str, split: str) -> str | None:
        for rel in (f"{split}/{subject}_{split}.csv", f"{split}/{subject}.csv"):
            for name in self.names:
                if name == rel or name.endswith("/" + rel):
                    return name
        return None

    def text(self, name: str) -> str:
        if self.zip is not None:
            return self.zip.read(self.names[name]).decode("utf-8-sig")
        return self.names[name].read_text(encoding="utf-8-sig")


def _read_csv(text: str, where: str) -> list[Question]:
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        return []
    head = [c.strip().lower() for c in rows[0]]
    if "question" in head and "a" in head:
        cols = {name: head.index(name) for name in ("question", "a", "b", "c", "d", "answer") if name in head}
        body = rows[1:]
    else:
        cols = dict(zip(("question", "a", "b", "c", "d", "answer"), range(6)))
        body = rows
    out = []
    for i, r in enumerate(body):
        if len(r) <= cols["question"]:
            raise DataError(f"{where}: row {i + 1} has {len(r)} columns")
        row = {k.upper() if len(k) == 1 else k: (r[j] if j < len(r) else "") for k, j in cols.items()}
        out.append(Question.from_row(row))
    return out


def _mapping(folder: Path) -> dict:
    try:
        mapping = json.loads((folder / "mapping.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {folder / 'mapping.json'}: {e}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise DataError(f"{folder / 'mapping.json'} must be an object of subject -> {{name, category}}")
    return mapping


def load_task(task: str, task_dir: str | Path) -> list[Subject]:
    """Every subject of the task, in mapping.json's order, with its dev pool and the questions of the split."""
    try:
        name, split, folder = locate(task, task_dir)
    except ValueError as e:
        raise DataError(f"eval.task={task}: {e}") from None
    if folder is None:
        from llmpipe.data import mc_synthetic as mc

        return [Subject(key, m["name"], m["category"],
                        [Question.from_row(r) for r in mc.split_rows(key, "dev")],
                        [Question.from_row(r) for r in mc.split_rows(key, SPLITS[split])])
                for key, m in mc.MAPPING.items()]
    files = _Files(folder)
    out = []
    for key, meta in _mapping(folder).items():
        parts = {}
        for stem in ("dev", SPLITS[split]):
            found = files.find(key, stem)
            if found is None:
                raise DataError(f"{folder}: no {stem} file of subject {key!r} (looked for [data/]{stem}/{key}_{stem}.csv"
                                f" and {stem}/{key}.csv{' in ' + folder.name + '.zip' if files.zip else ''})")
            parts[stem] = _read_csv(files.text(found), f"{folder.name}/{found}")
        questions = parts[SPLITS[split]]
        if any(q.answer is None for q in questions):
            raise DataError(f"eval.task={task}: the {split} split of {key!r} has questions without answers (C-Eval"
                            f" keeps its test answers private); evaluate on {name}_validation")
        meta = meta if isinstance(meta, dict) else {}
        out.append(Subject(key, str(meta.get("name", key)), str(meta.get("category", "Other")), parts["dev"],
                           questions))
    return out


def task_identity(task: str, task_dir: str | Path) -> str:
    """What the task's questions are, for fingerprints: the bundled set's name, or a hash of a folder's files."""
    try:
        name, _, folder = locate(task, task_dir)
    except ValueError:
        return f"unknown:{task}"
    if folder is None:
        from llmpipe.data import mc_synthetic as mc

        return f"bundled:{name}:{mc.SEED}"
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file() and q.suffix in (".json", ".csv", ".zip")):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return f"folder:{h.hexdigest()[:16]}"


