"""Pure search core: MCTS*, value inference and baselines (no ray, torch, vllm or I/O).

Models come in through two async callables (`Models.propose`, `Models.score`); the task through
`Answers` (ends, extract_answer). Every strategy returns a SearchResult with a Budget.
"""

from restmcts.search.baselines import best_of_n, cot, self_consistency, tot
from restmcts.search.mcts import mcts_star
from restmcts.search.strategies import STRATEGIES, run_strategy
from restmcts.search.tree import Node, Tree, mark_correct
from restmcts.search.types import (
    Answers,
    Budget,
    Checkpoint,
    Models,
    ProposeFn,
    ScoreFn,
    SearchResult,
    Solution,
    ValueSample,
    derive_seed,
)
from restmcts.search.values import infer_values

__all__ = [
    "Answers", "Budget", "Checkpoint", "Models", "Node", "ProposeFn", "STRATEGIES", "ScoreFn", "SearchResult",
    "Solution", "Tree", "ValueSample", "best_of_n", "cot", "derive_seed", "infer_values", "mark_correct",
    "mcts_star", "run_strategy", "self_consistency", "tot",
]
