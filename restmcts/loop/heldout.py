"""A held-out accuracy check that shares no code with the task's own answer checker.

A task that has an independent oracle offers `independent_check(question, steps) -> bool | None`
(arith recomputes the gold answer from the question's words and reads the model's final number
itself, restmcts/tasks/arith.py); for other tasks there is no independent oracle and the check
is None.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from restmcts.replay import Trace

Oracle = Callable[[str, Sequence[str]], "bool | None"]


def independent_accuracy(traces: Sequence[Trace], question_ids: Sequence[str],
                         oracle: Oracle | None) -> float | None:
    """Accuracy of the chosen solutions over `question_ids` (a question with none counts wrong);
    None without an oracle or when the oracle cannot judge a question."""
    if oracle is None:
        return None
    chosen = {t.question_id: t for t in traces if t.chosen}
    right = 0
    for qid in question_ids:
        t = chosen.get(qid)
        if t is None:
            continue
        verdict = oracle(t.question, t.steps)
        if verdict is None:
            return None
        right += verdict
    return right / len(question_ids) if question_ids else 0.0
