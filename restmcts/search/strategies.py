"""The strategy registry, the one list of search strategies: name -> implementation and budget.

    result = await run_strategy("mcts_star", question, models, answers, settings, seed)

Every strategy has the same async signature and reads only the tree's parameters
(`restmcts.config.SearchSettings`). `budget` names the setting that sets how much a strategy
spends (evaluation runs each strategy at several values of it); cot has none. Config validation
(`search.strategy`, `loop.eval_strategy`, `eval.strategies`) and the evaluation grid read this
registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from restmcts.config import SearchSettings
from restmcts.search.baselines import best_of_n, cot, self_consistency, tot
from restmcts.search.mcts import mcts_star
from restmcts.search.types import Answers, Models, SearchResult


class StrategyFn(Protocol):
    async def __call__(self, question: str, models: Models, answers: Answers, cfg: SearchSettings,
                       seed: int) -> SearchResult: ...


@dataclass(frozen=True)
class Strategy:
    name: str  # the value of search.strategy
    run: StrategyFn
    budget: str | None  # the SearchSettings field that sets its budget (None: one chain)


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("mcts_star", mcts_star, budget="num_simulations"),
    Strategy("cot", cot, budget=None),
    Strategy("sc", self_consistency, budget="num_samples"),
    Strategy("bon", best_of_n, budget="num_samples"),
    Strategy("tot", tot, budget="beam_width"),
)}


def strategy_named(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"search.strategy: unknown search strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


async def run_strategy(name: str, question: str, models: Models, answers: Answers, cfg: SearchSettings,
                       seed: int) -> SearchResult:
    return await strategy_named(name).run(question, models, answers, cfg, seed)
