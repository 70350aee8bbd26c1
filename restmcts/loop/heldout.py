"""A held-out accuracy check that shares no code with the task's own answer checker.

For arith it recomputes the gold answer from the question's words and reads the model's final
number itself; for other tasks there is no independent oracle and it returns None.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from restmcts.replay import Trace

_WORD_OPS = {"Add": lambda a, b: a + b, "Subtract": lambda a, b: a - b, "Multiply": lambda a, b: a * b}


def arith_gold(question: str) -> int | None:
    sentences = [s.strip() for s in question.split(".") if s.strip()]
    if not sentences or not sentences[0].startswith("Start with "):
        return None
    value = int(sentences[0].split()[-1])
    for sentence in sentences[1:]:
        words = sentence.split()
        if words[0] in _WORD_OPS and words[-1].isdigit():
            value = _WORD_OPS[words[0]](value, int(words[-1]))
    return value


def final_number(steps: Sequence[str]) -> int | None:
    if not steps or not steps[-1].startswith("The answer is"):
        return None
    numbers = re.findall(r"-?\d+", steps[-1])
    return int(numbers[-1]) if numbers else None


def independent_accuracy(traces: Sequence[Trace], question_ids: Sequence[str]) -> float | None:
    """Accuracy of the chosen solutions over `question_ids` (a question with none counts wrong)."""
    chosen = {t.question_id: t for t in traces if t.chosen}
    questions = {t.question_id: t.question for t in traces}
    right = 0
    for qid in question_ids:
        t = chosen.get(qid)
        if t is None:
            continue
        gold = arith_gold(questions[qid])
        if gold is None:
            return None
        right += final_number(t.steps) == gold
    return right / len(question_ids) if question_ids else 0.0
