"""What a task is: a question source, answer extraction and answer checking.

The search core only needs `ends` and `extract_answer` (pure string functions); the
worker calls `check` on finished solutions, and `unmarked_answer` for a solution whose last step
ended the policy's message without stating an answer. A task never touches models.
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

    def ends(self, steps: Sequence[str]) -> bool:
        """True when the solution `steps` is finished: its last step states a final answer."""

    def extract_answer(self, steps: Sequence[str]) -> str | None:
        """The final answer stated by a solution, or None when it states none."""

    def unmarked_answer(self, step: str) -> str | None:
        """The answer a last step gives without stating it in the task's form (a chat model ended
        its message after "So she makes 18 dollars."), or None where the task reads none."""

    def check(self, answer: str | None, gold: str) -> bool:
        """True when `answer` matches the gold answer. Never raises; never hangs."""


class MessageEnds:
    """A task's answer rules, plus: every solution in `ended` (the policy ended its message after
    its last step) is finished, and such a solution that states no answer in the task's form
    answers what `task.unmarked_answer` reads from its last step. `ended` holds whole prefixes
    (tuples of steps), never bare step texts: a step that ended one message may continue another
    branch. Used by the search workers (prefixes collected by `ModelClient.propose(..., ended=...)`)
    and by Monte Carlo labelling."""

    def __init__(self, task: Task, ended: set[tuple[str, ...]]) -> None:
        self.task = task
        self.ended = ended

    def ends(self, steps: Sequence[str]) -> bool:
        return tuple(steps) in self.ended or self.task.ends(steps)

    def extract_answer(self, steps: Sequence[str]) -> str | None:
        answer = self.task.extract_answer(steps)
        if answer is None and tuple(steps) in self.ended:
            answer = self.task.unmarked_answer(steps[-1])
        return answer
