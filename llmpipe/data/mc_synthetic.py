"""The bundled multiple-choice task ``mc_demo``: two subjects of closed, made-up facts that the built-in tiny
model can learn, in the shape of MMLU (a dev split of five solved examples per subject for few-shot prompts,
val and test splits, a subject -> category mapping), plus the bundled SFT set ``mc_demo_train`` that teaches the
same facts in the zero-shot prompt the evaluation renders.

* ``object_colours`` (category Other): "What is the colour of the stone?" -- each of eight objects has one
  of four (made-up) colours, offered as A. red  B. blue  C. green  D. yellow.
* ``addition`` (category STEM): "What is two plus three?" -- one or two plus one to four (sums two to five),
  offered as A. two ... D. five.

Each split draws its questions afresh (seeded) from the same small set of facts: the test split asks what the
train split teaches (a closed-book quiz), and a model learns the facts from the train split. Answers are balanced over the four letters, so a
model that has not learned the facts scores about 25 %.

    python -m llmpipe.data.mc_synthetic --out evaluation

writes the task in LLaMA-Factory's on-disk layout (``evaluation/mc_demo/mapping.json``, ``dev/``, ``val/``,
``test/`` CSV files), which ``eval.task_dir=evaluation`` then reads like any local task. llmpipe.data.synthetic
writes ``mc_demo_train.json`` with the other bundled data. Pure python: no torch, no datasets.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import random
from pathlib import Path

NAME = "mc_demo"
SEED = 4321
LETTERS = ("A", "B", "C", "D")
# eight objects, two of each colour: made-up facts (llmpipe.data.synthetic's demo sets give objects other colours)
OBJECTS = ("apple", "river", "stone", "cloud", "bird", "lamp", "house", "tree")
NUM = ("zero", "one", "two", "three", "four")
COLOURS = ("red", "blue", "green", "yellow")
SUMS = ("two", "three", "four", "five")
COLOUR_Q = "What is the colour of the {}?"
# rows per split and subject (dev: the few-shot pool, as MMLU's five)
SIZES = {"dev": 5, "val": 16, "test": 32, "train": 160}
MAPPING = {"object_colours": {"name": "object colours", "category": "Other"},
           "addition": {"name": "addition", "category": "STEM"}}
TRAIN_FILE = "mc_demo_train.json"
INFO = {"mc_demo_train": {"file_name": TRAIN_FILE}}


def _rng(tag: str) -> random.Random:
    return random.Random(f"{SEED}:{tag}")


_FACTS = _rng("facts")
COLOUR_OF = dict(zip(OBJECTS, [COLOURS[i % 4] for i in _FACTS.sample(range(len(OBJECTS)), len(OBJECTS))]))
PAIRS = {s: [(a, b) for a in (1, 2) for b in range(1, 5) if a + b == i + 2] for i, s in enumerate(SUMS)}


def _row(question: str, options: tuple[str, ...], answer: str) -> dict:
    return {"question": question, **dict(zip(LETTERS, options)), "answer": LETTERS[options.index(answer)]}


def _colour_row(rng: random.Random, colour: str) -> dict:
    obj = rng.choice([o for o in OBJECTS if COLOUR_OF[o] == colour])
    return _row(COLOUR_Q.format(obj), COLOURS, colour)


def _addition_row(rng: random.Random, total: str) -> dict:
    a, b = rng.choice(PAIRS[total])
    return _row(f"What is {NUM[a]} plus {NUM[b]}?", SUMS, total)


_MAKE = {"object_colours": (_colour_row, COLOURS), "addition": (_addition_row, SUMS)}


def split_rows(subject: str, split: str) -> list[dict]:
    """The rows of one subject's split: dicts with question, A-D and answer (a letter), answers balanced."""
    make, answers = _MAKE[subject]
    rng = _rng(f"{subject}:{split}")
    n = SIZES[split]
    order = [answers[i % 4] for i in range(n)]
    rng.shuffle(order)
    return [make(rng, a) for a in order]


def train_rows() -> list[dict]:
    """``mc_demo_train``: the train split of every subject as alpaca rows, the prompt exactly as the zero-shot
    evaluation renders it in English (llmpipe.data.mc_tasks.user_turn), the answer its letter."""
    from llmpipe.data.mc_prompt import Question, user_turn

    out = []
    for subject, meta in MAPPING.items():
        for row in split_rows(subject, "train"):
            q = Question.from_row(row)
            out.append({"instruction": user_turn(q, "en", meta["name"]), "input": "", "output": q.answer})
    _rng("train-order").shuffle(out)
    return out


def write_train(out: str | Path) -> list[Path]:
    p = Path(out) / TRAIN_FILE
    p.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in train_rows()) + "\n]\n",
                 encoding="utf-8")
    return [p]


def write_lf_layout(task_dir: str | Path) -> Path:
    """``<task_dir>/mc_demo``: mapping.json and headerless ``<split>/<subject>_<split>.csv`` files (MMLU's layout)."""
    root = Path(task_dir) / NAME
    for split in ("dev", "val", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        for subject in MAPPING:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            for row in split_rows(subject, split):
                writer.writerow([row["question"], *(row[k] for k in LETTERS), row["answer"]])
            (root / split / f"{subject}_{split}.csv").write_text(buf.getvalue(), encoding="utf-8")
    (root / "mapping.json").write_text(json.dumps(MAPPING, indent=2) + "\n", encoding="utf-8")
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="evaluation", help="task folder to write mc_demo/ into (default: evaluation)")
    args = ap.parse_args(argv)
    print(write_lf_layout(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
