"""How much the tree bookkeeping costs per MCTS* simulation, with the models taken out.

    python -m restmcts.search.overhead            # 1000 trees, default SearchSettings
    stats = measure_overhead(num_trees=1000, num_simulations=50)

Runs `num_trees` MCTS* trees concurrently on one asyncio loop against instant scripted models
(each call yields to the loop once, as a real server call would, and returns precomputed steps and
values). Everything measured is search overhead: selection, expansion bookkeeping, rollouts,
backup, budget accounting and the event-loop switches between trees. Call it from synchronous
code (it runs its own event loop).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

from restmcts.config import SearchSettings
from restmcts.search.mcts import mcts_star
from restmcts.search.types import Models, derive_seed

_STEPS = [f"x{i} = {i * 7 % 13}" for i in range(64)] + [f"The answer is {i}" for i in range(8)]
_VALUES = {s: (i * 37 % 101) / 100 for i, s in enumerate(_STEPS)}


class _InstantAnswers:
    def ends(self, steps: Sequence[str]) -> bool:
        return bool(steps) and steps[-1].startswith("The answer is")

    def extract_answer(self, steps: Sequence[str]) -> str | None:
        return steps[-1][14:] if self.ends(steps) else None


async def _propose(question: str, steps: Sequence[str], n: int, seed: int,
                   temperature: float | None = None) -> list[tuple[str, int]]:
    await asyncio.sleep(0)
    return [(_STEPS[(seed >> (7 * i)) % len(_STEPS)], 8) for i in range(n)]


async def _score(question: str, steps_list: Sequence[Sequence[str]]) -> list[float]:
    await asyncio.sleep(0)
    return [_VALUES[steps[-1]] for steps in steps_list]


def measure_overhead(num_trees: int = 1000, num_simulations: int | None = None,
                     cfg: SearchSettings | None = None) -> dict[str, float]:
    """Per-simulation overhead (microseconds) of `num_trees` concurrent trees on instant models."""
    cfg = cfg if cfg is not None else SearchSettings()
    if num_simulations is not None:
        cfg = dataclasses.replace(cfg, num_simulations=num_simulations)
    models, answers = Models(_propose, _score), _InstantAnswers()

    async def run_all() -> list:
        return await asyncio.gather(*(mcts_star(f"q{i}", models, answers, cfg, derive_seed(cfg.seed, i))
                                      for i in range(num_trees)))

    start = time.perf_counter()
    results = asyncio.run(run_all())
    seconds = time.perf_counter() - start
    simulations = sum(r.budget.simulations for r in results)
    return {
        "trees": num_trees,
        "simulations": simulations,
        "nodes": sum(len(r.tree.nodes) for r in results),
        "policy_calls": sum(r.budget.policy_calls for r in results),
        "prm_prefixes": sum(r.budget.prm_calls for r in results),
        "seconds": seconds,
        "us_per_simulation": 1e6 * seconds / max(simulations, 1),
    }


if __name__ == "__main__":
    print(measure_overhead())
