"""Multiple-choice scoring (the ``mc_eval`` stage's back-end): each question, rendered under the run's chat
template (llmpipe.infer.engine.Prompter) after its few-shot turns, goes through the model once; the logits at
the last prompt position over the token of each offered letter pick the answer. Batches are right-padded, so
the last real position of every row is its own; no gradients, no sampling: the same model and settings give
the same answers.

The result: accuracy per subject, per category and over all questions (``Average``), and every answer, as
``results.json``; the same accuracies as text in ``results.log`` (percentages, LLaMA-Factory's layout).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmpipe.data.mc_prompt import LETTERS, Subject, conversation, shots

AVERAGE = "Average"


@dataclass
class McJob:
    """What the mc_eval stage does, from the configuration (``eval.*``, ``train.seed``)."""
    task: str
    split: str
    source: str                   # the task folder, or "bundled"
    lang: str
    n_shot: int
    seed: int
    batch_size: int
    save_dir: str | None
    subjects: list[Subject]

    def conversations(self) -> list[list[list[dict]]]:
        """The chat turns of every question, per subject: its few-shot examples, then the question."""
        return [[conversation(s, q, shots(s, i, self.n_shot, self.seed), self.lang) for i, q in enumerate(s.questions)]
                for s in self.subjects]


def job_from_config(obj: Any) -> McJob:
    from llmpipe.data.mc_tasks import load_task, locate

    ev = obj.eval
    _, split, folder = locate(ev.task, ev.task_dir)
    return McJob(ev.task, split, str(folder) if folder else "bundled", ev.lang, int(ev.n_shot), int(obj.train.seed),
                 int(ev.batch_size), ev.save_dir or None, load_task(ev.task, ev.task_dir))


@dataclass
class Rendered:
    subject: Subject
    prompts: list[list[int]]      # token ids per question, up to and including the assistant turn's opening
    offered: list[tuple[str, ...]]  # letters each question offers


def render(job: McJob, prompter) -> list[Rendered]:
    """Every question of the job as prompt token ids (``prompter``: llmpipe.infer.engine.Prompter)."""
    return [Rendered(subject, [prompter.encode(m) for m in turns], [tuple(k for k, _ in q.choices) for q in subject.questions])
            for subject, turns in zip(job.subjects, job.conversations())]


def letter_ids(tokenizer) -> dict[str, int]:
    """The token each letter is predicted as (the last token of the letter on its own, as LLaMA-Factory does)."""
    ids = {k: tokenizer.encode(k, add_special_tokens=False)[-1] for k in LETTERS}
    if len(set(ids.values())) != len(ids):
        raise ValueError(f"the tokenizer gives the choice letters the same token: {ids}")
    return ids


def predict(model, pad_id: int, prompts: list[list[int]], offered: list[tuple[str, ...]], ids: dict[str, int],
            batch_size: int) -> list[str]:
    """The letter the model puts first, among the offered ones, after each prompt."""
    import torch

    device = next(model.parameters()).device
    answers: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            width = max(map(len, chunk))
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for row, p in enumerate(chunk):
                input_ids[row, :len(p)] = torch.tensor(p)
                mask[row, :len(p)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            last = logits[torch.arange(len(chunk), device=device), mask.sum(dim=1).to(device) - 1].float()
            for row, letters in enumerate(offered[start:start + batch_size]):
                scores = last[row, [ids[k] for k in letters]]
                answers.append(letters[int(torch.argmax(scores))])
    return answers


def evaluate(rendered: list[Rendered], model, tokenizer, batch_size: int, log: Callable[[str], None] = print
             ) -> dict[str, Any]:
    """Answers and accuracies of ``model`` on the rendered questions."""
    ids = letter_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    subjects, predictions = {}, {}
    by_category: dict[str, list[int]] = {AVERAGE: [0, 0]}
    for r in rendered:
        answers = predict(model, pad, r.prompts, r.offered, ids, batch_size)
        correct = sum(a == q.answer for a, q in zip(answers, r.subject.questions))
        n = len(answers)
        subjects[r.subject.key] = {"name": r.subject.name, "category": r.subject.category,
                                   "accuracy": correct / n if n else 0.0, "correct": correct, "questions": n}
        predictions[r.subject.key] = {str(i): a for i, a in enumerate(answers)}
        for cat in (AVERAGE, r.subject.category):
            tally = by_category.setdefault(cat, [0, 0])
            tally[0], tally[1] = tally[0] + correct, tally[1] + n
        log(f"{r.subject.key}: {correct}/{n}")
    accuracy = {cat: (c / n if n else 0.0) for cat, (c, n) in by_category.items()}
    return {"accuracy": accuracy, "questions": by_category[AVERAGE][1], "subjects": subjects,
            "predictions": predictions}


def score_log(results: dict[str, Any]) -> str:
    """results.log: the accuracy of the average, each category and each subject, in percent."""
    lines = [f"{cat:>20}: {100 * acc:.2f}" for cat, acc in results["accuracy"].items()]
    lines += [""] + [f"{key:>20}: {100 * s['accuracy']:.2f}  ({s['correct']}/{s['questions']}, {s['category']})"
                     for key, s in results["subjects"].items()]
    return "\n".join(lines) + "\n"
