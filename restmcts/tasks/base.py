"""What a task is: a question source, answer extraction and answer checking.

The search core only needs `is_terminal` and `extract_answer` (pure string functions); the
worker calls `check` on finished solutions. A task never touches models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Split = Literal["train", "test"]


@dataclass(frozen=True)
class Question:
    """One problem. `id` is stable across runs and keys every replay row."""

    id: str
    question: str
    answer: str  # the gold final answer, as text


@dataclass
class LoadReport:
    """What loading a dataset skipped and why, so that no row is dropped silently."""

    source: str
    rows: int = 0
    loaded: int = 0
    skipped: list[str] = field(default_factory=list)  # "file:line: reason"

    def summary(self) -> str:
        return f"{self.source}: loaded {self.loaded} of {self.rows} rows, skipped {len(self.skipped)}"


class DataError(ValueError):
    """A dataset row or file is malformed; the message names the file, the line and the field."""


class Task(Protocol):
    name: str

    def questions(self, split: Split, limit: int = 0) -> list[Question]:
        """The questions of a split, in a stable order; `limit` > 0 keeps the first `limit`."""

    def is_terminal(self, step: str) -> bool:
        """True when this step states a final answer."""

    def extract_answer(self, steps: Sequence[str]) -> str | None:
        """The final answer stated by a solution, or None when it states none."""

    def check(self, answer: str | None, gold: str) -> bool:
        """True when `answer` matches the gold answer. Never raises; never hangs."""
