"""MATH (and MATH-500): competition problems from a local JSONL/Parquet file (or a hub dataset).

Rows have `problem` and `solution`, and optionally `answer` (MATH-500). The gold answer is
`answer` when present, else the content of the last `\\boxed{...}` in the solution (braces
balanced, so `\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`). Question ids are
`math-{split}-{index}`, with `index` the row's 0-based position in its file.

Model solutions end with a step that states the answer: its last `\\boxed{...}`, else the
rest of the line after `The answer is` or `####`. math-verify decides equivalence, so
`\\frac{1}{2}` matches `0.5` (restmcts/tasks/checking.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from restmcts.config import DataConfig
from restmcts.tasks.base import LoadReport, Question, Split
from restmcts.tasks.checking import check_answer, last_boxed, stated_answer, states_answer
from restmcts.tasks.files import BadRow, Record, load_questions, optional_text_field, text_field

QUESTION_FIELDS = ("problem", "question")


def _convert(record: Record) -> tuple[str, str]:
    question = text_field(record, QUESTION_FIELDS)
    gold = optional_text_field(record, ("answer",), numbers=True)
    if gold is None:
        solution = text_field(record, ("solution",))
        gold = last_boxed(solution)
        if not gold:
            raise BadRow("solution", "no \\boxed{...} answer, and no answer field")
    return question, gold


class MathTask:
    """MATH questions from `data.train_path` / `data.test_path`; answers checked by math-verify."""

    name = "math"

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self._questions: dict[str, list[Question]] = {}
        self.reports: dict[str, LoadReport] = {}

    def questions(self, split: Split, limit: int = 0) -> list[Question]:
        if split not in self._questions:
            self._questions[split], self.reports[split] = load_questions(self.name, self.cfg, split, _convert)
        questions = self._questions[split]
        return questions[:limit] if limit > 0 else list(questions)

    def is_terminal(self, step: str) -> bool:
        return states_answer(step)

    def extract_answer(self, steps: Sequence[str]) -> str | None:
        for step in reversed(steps):
            if states_answer(step):
                return stated_answer(step)
        return None

    def check(self, answer: str | None, gold: str) -> bool:
        return check_answer(answer, gold, self.cfg.check_timeout_s)
