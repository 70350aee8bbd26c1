"""GSM8K: grade-school word problems from a local JSONL/Parquet file (or a hub dataset).

Rows have `question` and `answer`; the answer is a worked solution ending in `#### N`, and
the gold answer is N with thousands commas removed ("#### 1,200" -> "1200"). A row whose
answer is just a number is accepted too. Question ids are `gsm8k-{split}-{index}`, with
`index` the row's 0-based position in its file, so they are stable across runs.

Model solutions end with a step that states the answer (`The answer is 18`, `\\boxed{18}` or
`#### 18`). The predicted answer is the boxed content, else the first number after the
marker; math-verify decides whether it equals the gold one (restmcts/tasks/checking.py).
A chat model may instead just end its message after a step like "So she makes 18 dollars.":
`unmarked_answer` reads such a final step as its last number, as GSM8K evaluation harnesses do
(the search asks for it only when the policy ended its message there).
"""

from __future__ import annotations

from restmcts.tasks.checking import first_number, last_boxed, last_number, stated_answer
from restmcts.tasks.files import BadRow, FileTask, Record, text_field

QUESTION_FIELDS = ("question", "problem")
ANSWER_FIELDS = ("answer",)


def gold_answer(answer: str) -> str | None:
    """The final answer of a GSM8K worked answer (`... #### 1,200` -> "1200"), or None."""
    if "####" in answer:
        final = answer.rsplit("####", 1)[1].strip().replace(",", "")
        return final or None
    plain = answer.replace(",", "").strip()
    return plain if first_number(plain) == plain else None


def _convert(record: Record) -> tuple[str, str]:
    question = text_field(record, QUESTION_FIELDS)
    answer = text_field(record, ANSWER_FIELDS, numbers=True)
    gold = gold_answer(answer)
    if gold is None:
        raise BadRow("answer", "no final answer after '####'")
    return question, gold


class GSM8KTask(FileTask):
    """GSM8K questions from `data.train_path` / `data.test_path`; answers checked by math-verify."""

    name = "gsm8k"

    convert = staticmethod(_convert)

    def read_answer(self, step: str) -> str | None:
        boxed = last_boxed(step)
        if boxed:
            return boxed
        stated = stated_answer(step)
        return first_number(stated) if stated else None

    def unmarked_answer(self, step: str) -> str | None:
        return last_number(step)
