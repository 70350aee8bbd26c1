"""Math-Shepherd-style Monte Carlo value labels, charged to a Budget like every strategy.

    labels, budget = await monte_carlo_labels(question, models, answers, cfg, seed, check, rollouts=4)

One solution is sampled as a chain at `cfg.temperature`. Every prefix p_k of it that does not
state an answer is completed `rollouts` times (chains continuing p_k), and its label is the
fraction of completions whose answer `check` accepts; a prefix that states an answer is labelled
by checking it. The sampled solution and every rollout go through the same propose callable as
MCTS*, so a Monte Carlo label set and an MCTS* pass can be bought with the same policy tokens.
`check` is the caller's (gold answer bound in), which keeps this module free of tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from restmcts.config import SearchSettings
from restmcts.search.baselines import sample_chain
from restmcts.search.calls import Calls
from restmcts.search.types import Answers, Budget, Models, derive_seed

Label = tuple[tuple[str, ...], float]  # (partial solution, fraction of rollouts that reach a right answer)


async def monte_carlo_labels(question: str, models: Models, answers: Answers, cfg: SearchSettings, seed: int,
                             check: Callable[[str | None], bool], rollouts: int) -> tuple[list[Label], Budget]:
    calls = Calls(models, question)
    solution = await sample_chain(calls, answers, cfg, derive_seed(seed, "mc-solution"), cfg.temperature)

    async def label(k: int) -> float:
        prefix = solution.steps[:k]
        if answers.ends(prefix):
            return float(check(answers.extract_answer(prefix)))
        chains = await asyncio.gather(*(
            sample_chain(calls, answers, cfg, derive_seed(seed, "mc-rollout", k, r), cfg.temperature, prefix)
            for r in range(rollouts)))
        return sum(c.answer is not None and check(c.answer) for c in chains) / rollouts

    values = await asyncio.gather(*(label(k) for k in range(1, len(solution.steps) + 1)))
    return [(solution.steps[:k], v) for k, v in enumerate(values, start=1)], calls.budget
