"""The search core's boundary: how models and answers come in, and what a search returns.

Models enter through two narrow async callables, so the same search runs against a scripted
fake in a unit test, an in-process engine, or Ray actor handles. The search never batches:
every tree awaits its own calls and the servers batch whatever is in flight across all trees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class ProposeFn(Protocol):
    """Sample `n` next steps after `steps` (each ends before the step delimiter).

    Returns `(text, tokens)` per sample: the step text and the policy tokens it cost.
    `temperature=0` asks for greedy decoding; None means the server's default.
    `seed` makes sampling reproducible: the same (prompt, n, seed) gives the same steps.
    """

    async def __call__(self, question: str, steps: Sequence[str], n: int, seed: int,
                       temperature: float | None = None) -> list[tuple[str, int]]: ...


class ScoreFn(Protocol):
    """PRM values in [0, 1] for each partial solution (`steps_list[i]` is one prefix)."""

    async def __call__(self, question: str, steps_list: Sequence[Sequence[str]]) -> list[float]: ...


class Answers(Protocol):
    """The pure part of a task that the search needs (see restmcts.tasks.base.Task)."""

    def ends(self, steps: Sequence[str]) -> bool:
        """True when the solution `steps` is finished after its last step (it states an answer,
        or the policy ended its message there). Keyed by the whole prefix, not the step text."""
        ...

    def extract_answer(self, steps: Sequence[str]) -> str | None: ...


@dataclass(frozen=True)
class Models:
    propose: ProposeFn
    score: ScoreFn


@dataclass
class Budget:
    """What a search spent: every strategy reports both, so strategies compare at equal budget."""

    tokens: int = 0  # policy tokens generated (expansions and rollouts alike)
    policy_calls: int = 0  # propose() calls
    prm_calls: int = 0  # prefixes scored by the PRM
    reused_scores: int = 0  # prefixes asked for again: answered with the value already scored, not sent
    bad_scores: int = 0  # PRM outputs that were NaN/inf (scored 0) or outside [0, 1] (clipped)
    empty_steps: int = 0  # proposed steps dropped as empty
    duplicate_steps: int = 0  # proposed steps dropped as duplicates of a sibling
    wasted_tokens: int = 0  # policy tokens of the samples dropped as empty or duplicate (paid, unused)
    finished: int = 0  # nodes finished by a greedy completion to read an answer (fallback, self-critic)
    dead_ends: int = 0  # expansions (or chains) left with no usable step
    simulations: int = 0  # MCTS* simulations run, terminal revisits included (0 for the baselines)


@dataclass(frozen=True)
class Solution:
    """A terminal path: the steps from the root, its final answer and the PRM's view of it."""

    steps: tuple[str, ...]
    answer: str | None
    value: float | None = None  # PRM value used to rank it (strategy-specific), if any
    correct: bool | None = None  # set after checking against the gold answer


@dataclass(frozen=True)
class ValueSample:
    """One PRM training target (Q, p, v) inferred from a finished tree (ALGORITHM.md, Eq. 1-2)."""

    steps: tuple[str, ...]  # the partial solution p_k, root excluded
    value: float  # v_k in [0, 1]
    distance: int  # m_k: steps still needed to reach a correct answer (1 at a correct final step)
    on_correct_path: bool  # r_k = +1 (the step leads to a correct answer in the tree) or -1


@dataclass(frozen=True)
class Checkpoint:
    """What an anytime MCTS* tree (`search.record_at`) would have answered had its budget been
    `at` simulations: the answer and spend of the same search run with `num_simulations=at`."""

    at: int  # the simulation budget asked for (an entry of search.record_at)
    simulations: int  # simulations that search runs: fewer than `at` when it stopped early (gate, fully explored)
    tokens: int  # policy tokens it spends, the greedy completion of its chosen node included
    prm_calls: int  # prefixes the PRM scores
    best: Solution | None  # the answer it commits to (None: none), valued by its node's v at that point
    gated: bool = False  # the answer is the end gate's (the search stopped there)
    # Of `tokens`, the greedy completion that read the answer of a chosen node stating none. The rest
    # never decreases from one checkpoint to the next; the total can (a later tree may pick a node
    # that needs no completion).
    finish_tokens: int = 0


@dataclass
class SearchResult:
    """What one strategy produced for one question."""

    strategy: str
    best: Solution | None  # the answer the strategy commits to (None: it found no terminal path)
    solutions: list[Solution] = field(default_factory=list)  # every terminal path it produced
    budget: Budget = field(default_factory=Budget)
    tree: Any = None  # restmcts.search.tree.Tree for mcts_star
    failure: str | None = None  # why no answer (e.g. "no terminal node within max_depth")
    checkpoints: list[Checkpoint] = field(default_factory=list)  # mcts_star with search.record_at, in `at` order


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (run seed, iteration, question id, node, ...)."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)
