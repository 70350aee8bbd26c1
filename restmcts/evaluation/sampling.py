"""Sampling baselines from one set of samples per question, subsampled for smaller N.

One PRM best-of-N pass with N = `eval.max_samples` samples every question's chains (seeded per
chain index, so its first N chains are exactly the chains a pass with N samples draws) and
scores each answered chain with the PRM (`search.bon_aggregate`: min over prefixes or the last
prefix). Every smaller N reads the first N chains of that pass:

    sc       majority vote over the answers (ties: the answer seen first)
    bon      the chain with the highest PRM value (ties: the first)
    sc_prm   votes weighted by each chain's PRM value (ties: the answer seen first)

A chain whose step came back empty ended without a row in the traces; such chains are counted
as the last of the question's samples (their place in the order is not recorded). Tokens and
seconds for N are the pass's per-question figures times N / max_samples (the pass records spend
per question, not per chain). PRM calls for N are counted from the chains: a search scores each
distinct prefix of a question once (restmcts.search.calls), so N chains cost the distinct
prefixes of their answered chains (`search.bon_aggregate` "last": the distinct whole chains),
which N / max_samples of the pass's calls would understate for small N.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from restmcts.search.baselines import highest_value, majority, valued_prefixes

if TYPE_CHECKING:
    from restmcts.replay import Trace

SAMPLING = ("sc", "bon", "sc_prm")


def weighted_vote(candidates: Sequence[tuple[Trace, float]]) -> Trace:
    """Self-consistency with each vote weighted by the solution's value (ties: the answer seen first)."""
    weight: dict[str | None, float] = defaultdict(float)
    for t, v in candidates:
        weight[t.answer] += v
    winner = max(weight, key=lambda a: weight[a])
    return next(t for t, _ in candidates if t.answer == winner)


def _answered(rows: Sequence[Trace]) -> list[Trace]:
    return [t for t in rows if t.answer is not None]


def majority_pick(rows: Sequence[Trace]) -> Trace | None:
    answered = _answered(rows)
    return majority(answered) if answered else None


def best_pick(rows: Sequence[Trace]) -> Trace | None:
    answered = _answered(rows)
    return highest_value([(t, t.value or 0.0) for t in answered]) if answered else None


def weighted_pick(rows: Sequence[Trace]) -> Trace | None:
    answered = _answered(rows)
    return weighted_vote([(t, t.value or 0.0) for t in answered]) if answered else None


PICKS = {"sc": majority_pick, "bon": best_pick, "sc_prm": weighted_pick}


def by_question(traces: Sequence[Trace]) -> dict[str, list[Trace]]:
    """Each question's rows, in the order its chains were drawn."""
    rows: dict[str, list[Trace]] = defaultdict(list)
    for t in traces:
        rows[t.question_id].append(t)
    return rows


def subsample_scores(traces: Sequence[Trace], question_ids: Sequence[str], strategy: str, n: int) -> list[float]:
    """Per question (in `question_ids` order): 1.0 when `strategy` over its first `n` chains picks a
    correct answer, else 0.0 (no answered chain: wrong)."""
    if strategy not in PICKS:
        raise ValueError(f"subsample_scores: unknown sampling strategy {strategy!r}; allowed: {', '.join(PICKS)}")
    rows = by_question(traces)
    pick = PICKS[strategy]
    out = []
    for qid in question_ids:
        chosen = pick(rows.get(qid, [])[:n])
        out.append(1.0 if chosen is not None and chosen.correct else 0.0)
    return out


def subsample_prm_calls(traces: Sequence[Trace], question_ids: Sequence[str], n: int, aggregate: str = "min") -> float:
    """PRM calls per question that best-of-N over each question's first `n` chains sends: the distinct
    prefixes of its answered chains (`aggregate` "min"), or the distinct answered chains ("last")."""
    rows = by_question(traces)
    sent = 0
    for qid in question_ids:
        scored: set[tuple[str, ...]] = set()
        for t in _answered(rows.get(qid, [])[:n]):
            scored.update(valued_prefixes(t.steps, aggregate))
        sent += len(scored)
    return sent / max(len(question_ids), 1)
