"""Bad-row reports: every dropped or malformed example is counted per dataset, by reason, with the first
offenders (row number = 0-based index of the row in the dataset's files, in file order)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_EXAMPLES = 5


class BadRow:
    """Placeholder for a source row that could not be parsed (e.g. a broken JSONL line)."""

    def __init__(self, reason: str):
        self.reason = reason


@dataclass
class RowReport:
    dataset: str
    total: int = 0
    kept: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)  # [{"row": int, "reason": str}], first MAX_EXAMPLES
    notes: Counter = field(default_factory=Counter)  # kept rows that were changed (e.g. truncated)
    split: str = "train"

    def bad(self, row: int, reason: str) -> None:
        self.reasons[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"row": row, "reason": reason})

    @property
    def dropped(self) -> int:
        return sum(self.reasons.values())

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "split": self.split, "total": self.total, "kept": self.kept,
                "dropped": self.dropped, "reasons": dict(self.reasons), "examples": list(self.examples),
                "notes": dict(self.notes)}

    def summary(self) -> str:
        head = f"dataset {self.dataset!r} ({self.split}): {self.kept}/{self.total} rows kept"
        lines = [head + (f", {self.dropped} dropped" if self.dropped else "")]
        lines += [f"  {n} x {r}" for r, n in self.reasons.most_common()]
        lines += [f"  e.g. row {e['row']}: {e['reason']}" for e in self.examples]
        lines += [f"  note: {n} x {r}" for r, n in self.notes.most_common()]
        return "\n".join(lines)
