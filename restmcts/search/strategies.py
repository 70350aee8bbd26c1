"""The strategy registry: every search strategy has the same async signature.

    result = await run_strategy("mcts_star", question, models, answers, cfg, seed)

Names match `SearchConfig.strategy`: mcts_star, cot, sc (self-consistency), bon (best-of-N),
tot (BFS/beam tree of thoughts).
"""

from __future__ import annotations

from typing import Protocol

from restmcts.config import SearchConfig
from restmcts.search.baselines import best_of_n, cot, self_consistency, tot
from restmcts.search.mcts import mcts_star
from restmcts.search.types import Answers, Models, SearchResult


class Strategy(Protocol):
    async def __call__(self, question: str, models: Models, answers: Answers, cfg: SearchConfig,
                       seed: int) -> SearchResult: ...


STRATEGIES: dict[str, Strategy] = {
    "mcts_star": mcts_star,
    "cot": cot,
    "sc": self_consistency,
    "bon": best_of_n,
    "tot": tot,
}


async def run_strategy(name: str, question: str, models: Models, answers: Answers, cfg: SearchConfig,
                       seed: int) -> SearchResult:
    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    return await STRATEGIES[name](question, models, answers, cfg, seed)
