"""Baselines every comparison needs (ALGORITHM.md "Baselines"), at the same budget accounting.

    cot               one greedy chain (temperature 0)
    self_consistency  cfg.num_samples chains, majority vote on the extracted answer
    best_of_n         cfg.num_samples chains, the one the PRM ranks highest: min over its prefixes'
                      values or the last step's value (cfg.bon_aggregate)
    tot               BFS/beam: at each depth, cfg.branch proposals per kept partial solution, all
                      scored in one PRM call, the top cfg.beam_width kept

Chains are generated step by step through the same propose callable as MCTS* (n=1 per chain per
step, seed derived from (seed, chain, depth)) and end at a terminal step or at cfg.max_depth; a chain
whose step comes back empty stops there, unfinished, and counts as a dead end. For one seed,
self_consistency and best_of_n sample the same chains, so they differ only in how they pick. Solutions are the
chains that ended at a terminal step (an answer or max_depth); `best` is None when no solution
states an answer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from restmcts.config import SearchSettings
from restmcts.search.calls import Calls
from restmcts.search.types import Answers, Models, SearchResult, Solution, derive_seed

T = TypeVar("T")


@dataclass(frozen=True)
class Chain:
    steps: tuple[str, ...]
    finished: bool  # ended at a terminal step or at max_depth (False: an empty step cut it short)
    answer: str | None


async def sample_chain(calls: Calls, answers: Answers, cfg: SearchSettings, seed: int,
                       temperature: float, prefix: tuple[str, ...] = ()) -> Chain:
    """One chain, step by step, continuing `prefix` (its steps are part of the returned chain)."""
    steps = prefix
    while len(steps) < cfg.max_depth:
        texts, tokens = await calls.propose(steps, 1, derive_seed(seed, len(steps)), temperature)
        step = calls.clean(texts[:1], tokens[:1])
        if not step:
            calls.budget.dead_ends += 1
            return Chain(steps, False, None)
        steps += (step[0],)
        if answers.ends(steps):
            break
    return Chain(steps, True, answers.extract_answer(steps))


async def sample_chains(calls: Calls, answers: Answers, cfg: SearchSettings, seed: int) -> list[Chain]:
    return list(await asyncio.gather(*(
        sample_chain(calls, answers, cfg, derive_seed(seed, "chain", i), cfg.temperature)
        for i in range(cfg.num_samples))))


async def cot(question: str, models: Models, answers: Answers, cfg: SearchSettings, seed: int) -> SearchResult:
    calls = Calls(models, question)
    chain = await sample_chain(calls, answers, cfg, derive_seed(seed, "cot"), 0.0)
    solutions = [Solution(chain.steps, chain.answer)] if chain.finished else []
    return _result("cot", solutions, calls, lambda answered: answered[0])


async def self_consistency(question: str, models: Models, answers: Answers, cfg: SearchSettings,
                           seed: int) -> SearchResult:
    calls = Calls(models, question)
    chains = await sample_chains(calls, answers, cfg, seed)
    solutions = [Solution(c.steps, c.answer) for c in chains if c.finished]
    return _result("sc", solutions, calls, majority)


def majority(solutions: Sequence[Solution]) -> Solution:
    """The first solution with the most common answer (ties: the answer seen first)."""
    winner, _ = Counter(s.answer for s in solutions).most_common(1)[0]
    return next(s for s in solutions if s.answer == winner)


def highest_value(candidates: Sequence[tuple[T, float]]) -> T:
    """The candidate with the highest value (ties: the first): best-of-N's pick."""
    return max(candidates, key=lambda cv: cv[1])[0]


def _best_scored(solutions: Sequence[Solution]) -> Solution:
    return highest_value([(s, s.value or 0.0) for s in solutions])


async def best_of_n(question: str, models: Models, answers: Answers, cfg: SearchSettings,
                    seed: int) -> SearchResult:
    calls = Calls(models, question)
    chains = [c for c in await sample_chains(calls, answers, cfg, seed) if c.finished]
    values = await asyncio.gather(*(_chain_value(calls, c, cfg) for c in chains))
    solutions = [Solution(c.steps, c.answer, v) for c, v in zip(chains, values, strict=True)]
    return _result("bon", solutions, calls, _best_scored)


async def _chain_value(calls: Calls, chain: Chain, cfg: SearchSettings) -> float | None:
    """PRM value of a chain with an answer: min over its prefixes, or its full prefix only."""
    if chain.answer is None:
        return None  # never a candidate: not worth a PRM call
    return min(await calls.score(valued_prefixes(chain.steps, cfg.bon_aggregate)))


def valued_prefixes(steps: Sequence[str], aggregate: str) -> list[tuple[str, ...]]:
    """The prefixes best-of-N scores to value a chain: every prefix ("min"), or the whole chain ("last")."""
    steps = tuple(steps)
    return [steps] if aggregate == "last" else [steps[:k] for k in range(1, len(steps) + 1)]


async def tot(question: str, models: Models, answers: Answers, cfg: SearchSettings, seed: int) -> SearchResult:
    calls = Calls(models, question)
    frontier: list[tuple[str, ...]] = [()]
    solutions: list[Solution] = []
    for depth in range(1, cfg.max_depth + 1):
        candidates = await _propose_all(calls, frontier, cfg, derive_seed(seed, "tot", depth))
        if not candidates:
            break
        values = await calls.score(candidates)
        top = sorted(range(len(candidates)), key=lambda i: -values[i])[: cfg.beam_width]
        frontier = []
        for i in top:
            steps = candidates[i]
            if answers.ends(steps) or depth == cfg.max_depth:
                solutions.append(Solution(steps, answers.extract_answer(steps), values[i]))
            else:
                frontier.append(steps)
        if not frontier:
            break
    return _result("tot", solutions, calls, _best_scored)


async def _propose_all(calls: Calls, frontier: list[tuple[str, ...]], cfg: SearchSettings,
                       seed: int) -> list[tuple[str, ...]]:
    """cfg.branch new steps for every kept partial solution (dead ends counted)."""
    proposals = await asyncio.gather(*(
        calls.propose(p, cfg.branch, derive_seed(seed, i), cfg.temperature) for i, p in enumerate(frontier)))
    candidates = []
    for prefix, (texts, tokens) in zip(frontier, proposals, strict=True):
        steps = calls.clean(texts, tokens)
        if not steps:
            calls.budget.dead_ends += 1
        candidates += [prefix + (s,) for s in steps]
    return candidates


def _result(name: str, solutions: list[Solution], calls: Calls,
            pick: Callable[[list[Solution]], Solution]) -> SearchResult:
    answered = [s for s in solutions if s.answer is not None]
    best = pick(answered) if answered else None
    failure = None if best else f"{name}: no solution states an answer within max_depth"
    return SearchResult(name, best, solutions, calls.budget, None, failure)
