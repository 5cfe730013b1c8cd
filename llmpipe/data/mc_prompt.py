"""How a multiple-choice question is put to a model (LLaMA-Factory's prompt of MMLU, CMMLU and C-Eval): each
solved dev example is a user turn (question, the choices one per line, the answer cue) followed by an assistant
turn (its letter); the question asked is the last user turn; the first user turn starts with the subject line.
``lang`` picks the English or the Chinese wording. Where the questions come from: llmpipe.data.mc_tasks."""
from __future__ import annotations

import random
from dataclasses import dataclass

LETTERS = ("A", "B", "C", "D")
# lang -> (subject line, one choice, answer cue): the wording of MMLU's and of CMMLU/C-Eval's prompts
WORDING = {
    "en": ("The following are multiple choice questions (with answers) about {subject}.\n\n", "\n{letter}. {text}",
           "\nAnswer:"),
    "zh": ("以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n", "\n{letter}. {text}", "\n答案："),
}


@dataclass(frozen=True)
class Question:
    question: str
    choices: tuple[tuple[str, str], ...]   # (letter, text) for each letter the row offers
    answer: str | None                     # the right letter; None where the split keeps its answers private

    @classmethod
    def from_row(cls, row: dict) -> Question:
        choices = tuple((k, str(row[k]).strip()) for k in LETTERS if str(row.get(k) or "").strip())
        answer = str(row.get("answer") or "").strip().upper() or None
        return cls(str(row["question"]).strip(), choices, answer)


@dataclass
class Subject:
    key: str
    name: str
    category: str
    dev: list[Question]
    questions: list[Question]


# ------------------------------------------------------------------------------------------------- prompts
def user_turn(q: Question, lang: str, subject: str | None = None) -> str:
    """A question with its choices and the answer cue; ``subject`` given: the subject line before it."""
    head, choice, cue = WORDING[lang]
    text = q.question + "".join(choice.format(letter=k, text=t) for k, t in q.choices) + cue
    return head.format(subject=subject) + text if subject is not None else text


def shots(subject: Subject, index: int, n_shot: int, seed: int) -> list[Question]:
    """The solved examples before question ``index``: ``n_shot`` of the dev pool, drawn per question (seeded)."""
    k = min(n_shot, len(subject.dev))
    return random.Random(f"{seed}:{subject.key}:{index}").sample(subject.dev, k) if k else []


def conversation(subject: Subject, q: Question, examples: list[Question], lang: str) -> list[dict]:
    """The chat turns put to the model: solved examples as user/assistant pairs, then the question."""
    messages = []
    for i, ex in enumerate([*examples, q]):
        messages.append({"role": "user", "content": user_turn(ex, lang, subject.name if i == 0 else None)})
        if ex is not q:
            messages.append({"role": "assistant", "content": ex.answer or ""})
    return messages
