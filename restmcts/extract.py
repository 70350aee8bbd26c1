"""From a finished search to replay records (Algorithm 1, lines "extract D_G and D_V").

`judge` checks every terminal solution against the gold answer (each distinct answer once);
`to_records` turns one question's result into Trace rows (every terminal solution, the chosen
one flagged) and, for MCTS*, ValueRecord rows inferred from the tree (ALGORITHM.md, "Inferring
value targets").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from restmcts.replay import Trace, ValueRecord
from restmcts.search import Budget, SearchResult, Solution, infer_values, mark_correct
from restmcts.tasks import Question


@dataclass
class QuestionOutcome:
    """Everything one question contributes to the replay, plus what it cost."""

    question_id: str
    traces: list[Trace]
    values: list[ValueRecord]
    solved: bool  # at least one verified-correct solution
    answered_correctly: bool  # the chosen solution is correct
    budget: Budget
    failure: str | None = None


def judge(result: SearchResult, check: Callable[[str | None], bool]) -> SearchResult:
    """Set `correct` on every solution (and on the tree's terminal nodes) using `check`."""
    cache: dict[str | None, bool] = {}

    def cached(answer: str | None) -> bool:
        if answer not in cache:
            cache[answer] = check(answer) if answer is not None else False
        return cache[answer]

    if result.tree is not None:
        mark_correct(result.tree, cached)

    def mark(s: Solution) -> Solution:
        return dataclasses.replace(s, correct=cached(s.answer))

    result.solutions = [mark(s) for s in result.solutions]
    result.best = mark(result.best) if result.best is not None else None
    return result


def to_records(question: Question, result: SearchResult, iteration: int) -> QuestionOutcome:
    """Rows for the replay; `result` must have been judged."""
    tokens = result.budget.tokens
    best = tuple(result.best.steps) if result.best is not None else None
    traces, flagged = [], False
    for s in result.solutions:
        chosen = not flagged and tuple(s.steps) == best
        flagged = flagged or chosen
        traces.append(Trace(question.id, question.question, tuple(s.steps), s.answer, bool(s.correct),
                            tokens, result.strategy, iteration, chosen=chosen, value=s.value))
    values = []
    if result.tree is not None:
        values = [
            ValueRecord(question.id, question.question, tuple(v.steps), float(v.value), int(v.distance),
                        bool(v.on_correct_path), iteration)
            for v in infer_values(result.tree)
        ]
    best_correct = bool(result.best is not None and result.best.correct)
    return QuestionOutcome(
        question_id=question.id,
        traces=traces,
        values=values,
        solved=any(t.correct for t in traces),
        answered_correctly=best_correct,
        budget=result.budget,
        failure=result.failure,
    )
