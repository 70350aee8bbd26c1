"""MATH (and MATH-500): competition problems from a local JSONL/Parquet file (or a hub dataset).

Rows have `problem` and `solution`, and optionally `answer` (MATH-500). The gold answer is
`answer` when present, else the content of the last `\\boxed{...}` in the solution (braces
balanced, so `\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`). Question ids are
`math-{split}-{index}`, with `index` the row's 0-based position in its file.

Model solutions end with a step that states the answer: its last `\\boxed{...}`, else the
rest of the line after `The answer is` or `####`. math-verify decides equivalence, so
`\\frac{1}{2}` matches `0.5` (restmcts/tasks/checking.py). A final step after which a chat model
ended its message without such a marker is read by its last `$...$` expression, else its last
number (`unmarked_answer`).
"""

from __future__ import annotations

import re

from restmcts.tasks.checking import last_boxed, last_number, stated_answer
from restmcts.tasks.files import BadRow, FileTask, Record, optional_text_field, text_field

QUESTION_FIELDS = ("problem", "question")
_INLINE_MATH = re.compile(r"\$([^$]+)\$")


def _convert(record: Record) -> tuple[str, str]:
    question = text_field(record, QUESTION_FIELDS)
    gold = optional_text_field(record, ("answer",), numbers=True)
    if gold is None:
        solution = text_field(record, ("solution",))
        gold = last_boxed(solution)
        if not gold:
            raise BadRow("solution", "no \\boxed{...} answer, and no answer field")
    return question, gold


class MathTask(FileTask):
    """MATH questions from `data.train_path` / `data.test_path`; answers checked by math-verify."""

    name = "math"

    convert = staticmethod(_convert)

    def read_answer(self, step: str) -> str | None:
        return stated_answer(step)

    def unmarked_answer(self, step: str) -> str | None:
        inline = _INLINE_MATH.findall(step)
        if inline:
            last = inline[-1].strip()
            return last.rsplit("=", 1)[-1].strip() or None
        return last_number(step)
