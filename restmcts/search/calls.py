"""Model calls for one question, each charged to the question's Budget.

Every strategy goes through `Calls`, so tokens, policy calls and PRM calls are counted the same
way everywhere and strategies compare at equal budget. Bad model output is repaired here, never
raised: empty and duplicate steps are dropped (`clean_steps`; their tokens were paid and count in
`budget.tokens`, and again in `budget.wasted_tokens`), and PRM scores that are NaN/inf become 0
and scores outside [0, 1] are clipped (`clip_scores`), each counted in the Budget.

A question's prefixes are scored once: `score` keeps every value it has asked for (or is still
waiting on) and sends only prefixes it has not seen, so samples that share their first steps
(most of them, for a sharp policy) pay for those prefixes once. `budget.prm_calls` counts the
prefixes sent; `budget.reused_scores` the values answered from what was already asked.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from restmcts.search.types import Budget, Models


class Calls:
    def __init__(self, models: Models, question: str, budget: Budget | None = None):
        self.models = models
        self.question = question
        self.budget = budget if budget is not None else Budget()
        self._scored: dict[tuple[str, ...], tuple[asyncio.Future[list[float]], int]] = {}

    async def propose(self, steps: Sequence[str], n: int, seed: int, temperature: float | None = None,
                      question: str | None = None) -> tuple[list[str], list[int]]:
        """`n` sampled next steps after `steps`, and the policy tokens each one cost."""
        question = self.question if question is None else question
        out = await self.models.propose(question, steps, n, seed, temperature)
        tokens = [int(t) for _, t in out]
        self.budget.policy_calls += 1
        self.budget.tokens += sum(tokens)
        return [text for text, _ in out], tokens

    async def score(self, prefixes: Sequence[Sequence[str]]) -> list[float]:
        """PRM values in [0, 1] for each prefix. Prefixes this question has not had scored go out in
        one score call; the others reuse the value already asked for (none when `prefixes` is empty)."""
        keys = [tuple(p) for p in prefixes]
        new = [k for k in dict.fromkeys(keys) if k not in self._scored]
        if new:
            pending = asyncio.ensure_future(self._score_new(new))
            self._scored.update((k, (pending, i)) for i, k in enumerate(new))
        self.budget.reused_scores += len(keys) - len(new)
        values = []
        for k in keys:
            pending, i = self._scored[k]
            values.append((await pending)[i])
        return values

    async def _score_new(self, prefixes: list[tuple[str, ...]]) -> list[float]:
        raw = await self.models.score(self.question, prefixes)
        self.budget.prm_calls += len(prefixes)
        return clip_scores(raw, len(prefixes), self.budget)

    def clean(self, texts: Sequence[str], tokens: Sequence[int], taken: Sequence[str] = ()) -> list[str]:
        return clean_steps(texts, tokens, self.budget, taken)


def clean_steps(texts: Sequence[str], tokens: Sequence[int], budget: Budget, taken: Sequence[str] = ()) -> list[str]:
    """Stripped steps without empties or duplicates (of each other or of `taken`), in order; the
    tokens of every dropped sample count in `budget.wasted_tokens`."""
    seen, out = set(taken), []
    for text, cost in zip(texts, tokens, strict=True):
        step = text.strip()
        if step and step not in seen:
            seen.add(step)
            out.append(step)
            continue
        if not step:
            budget.empty_steps += 1
        else:
            budget.duplicate_steps += 1
        budget.wasted_tokens += cost
    return out


def clip_scores(raw: Sequence[Any], n: int, budget: Budget) -> list[float]:
    """`n` values in [0, 1]: NaN, inf, non-numbers and missing entries become 0, others are
    clipped; each repair counts in `budget.bad_scores` (so does every extra entry, then ignored)."""
    values = list(raw)
    budget.bad_scores += max(0, len(values) - n) + max(0, n - len(values))
    values = values[:n] + [0.0] * (n - len(values))
    return [_clip(x, budget) for x in values]


def _clip(x: Any, budget: Budget) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        budget.bad_scores += 1
        return 0.0
    if v < 0.0 or v > 1.0:
        budget.bad_scores += 1
        return min(1.0, max(0.0, v))
    return v
