"""Scripted fake models with the search core's exact ProposeFn / ScoreFn signatures.

    from fakes import ARITH, ArithPolicy, ArithPRM   # pytest puts tests/ on sys.path
    models = Models(ArithPolicy(p=0.8), ArithPRM(noise=0.05))
    result = await mcts_star(question, models, ARITH, SearchConfig(), seed=0)

- ArithPolicy: reads the arith question and proposes the right next step with probability p,
  else a plausible wrong one (right operation, wrong result); it ends with `The answer is N`.
  Greedy calls (temperature 0) give the right step when p >= 0.5. Sampling is seeded from the
  `seed` argument and the prefix, so the same call always returns the same steps. Asked the
  self-critic question, it replies "Yes, solved." once every operation has been applied.
- ArithPRM: high values for prefixes whose steps are all right (restmcts.tasks.arith.step_labels),
  rising with depth to 1.0 at a right final answer, 0.1 otherwise, plus seeded noise.
- ScriptedPolicy / ScriptedPRM: answer from a plain function, for hand-built cases.
Every fake records its calls (`calls`) and what it handed out (`tokens`, `prefixes`), so tests can
check the search's Budget against what the models really did.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from restmcts.config import DataConfig
from restmcts.search import derive_seed
from restmcts.search.mcts import CRITIC_SUFFIX
from restmcts.tasks.arith import ArithTask, Problem, apply, generate, parse_question, step_labels

ARITH = ArithTask(DataConfig())  # the Answers (ends, extract_answer) for arith text
_RESULT = re.compile(r"=\s*(-?\d+)\s*$")
_WRONG_DELTAS = (-3, -2, -1, 1, 2, 3, 10)


def arith_problem(seed: int, num_ops: int = 3) -> Problem:
    """A seeded arith problem (`.text` is the question, `.answer` the gold answer)."""
    return generate(random.Random(seed), num_ops, DataConfig())


def _tokens(text: str) -> int:
    return len(text.split()) + 1  # a word-level count plus the step delimiter


class ArithPolicy:
    def __init__(self, p: float = 0.8):
        self.p = p
        self.calls: list[tuple[str, tuple[str, ...], int, int, float | None]] = []
        self.tokens = 0  # total tokens handed out

    async def __call__(self, question: str, steps: Sequence[str], n: int, seed: int,
                       temperature: float | None = None) -> list[tuple[str, int]]:
        self.calls.append((question, tuple(steps), n, seed, temperature))
        problem = parse_question(question)
        if question.endswith(CRITIC_SUFFIX):
            done = len(steps) >= len(problem.ops)
            texts = ["Yes, solved." if done else "No, keep going."] * n
        else:
            rng = random.Random(derive_seed(seed, *steps))
            greedy = temperature == 0
            texts = [next_step(problem, steps, self.p >= 0.5 if greedy else rng.random() < self.p, rng)
                     for _ in range(n)]
        out = [(t, _tokens(t)) for t in texts]
        self.tokens += sum(t for _, t in out)
        return out


def next_step(problem: Problem, steps: Sequence[str], right: bool, rng: random.Random) -> str:
    """The next arith step after `steps`, continuing from the last stated result."""
    last = _RESULT.search(steps[-1]) if steps else None
    value = int(last.group(1)) if last else problem.start
    delta = 0 if right else rng.choice(_WRONG_DELTAS)
    k = len(steps)
    if k < len(problem.ops):
        sym, x = problem.ops[k]
        return f"{value} {sym} {x} = {apply(value, sym, x) + delta}"
    return f"The answer is {value + delta}"


class ArithPRM:
    def __init__(self, noise: float = 0.05, seed: int = 0):
        self.noise = noise
        self.seed = seed
        self.calls: list[tuple[str, tuple[tuple[str, ...], ...]]] = []
        self.prefixes = 0  # total prefixes scored

    async def __call__(self, question: str, steps_list: Sequence[Sequence[str]]) -> list[float]:
        self.calls.append((question, tuple(tuple(s) for s in steps_list)))
        self.prefixes += len(steps_list)
        problem = parse_question(question)
        return [self.value(problem, question, steps) for steps in steps_list]

    def value(self, problem: Problem, question: str, steps: Sequence[str]) -> float:
        right = all(step_labels(problem, steps))
        base = 0.5 + 0.5 * len(steps) / (len(problem.ops) + 1) if right else 0.1
        noise = random.Random(derive_seed(self.seed, question, *steps)).uniform(-self.noise, self.noise)
        return min(1.0, max(0.0, base + noise))


class ScriptedPolicy:
    """propose() returns `script(steps, n, seed)` (a list of step texts); tokens = words + 1."""

    def __init__(self, script: Callable[[tuple[str, ...], int, int], list[str]]):
        self.script = script
        self.calls: list[tuple[str, tuple[str, ...], int, int, float | None]] = []
        self.tokens = 0

    async def __call__(self, question: str, steps: Sequence[str], n: int, seed: int,
                       temperature: float | None = None) -> list[tuple[str, int]]:
        self.calls.append((question, tuple(steps), n, seed, temperature))
        out = [(t, _tokens(t)) for t in self.script(tuple(steps), n, seed)]
        self.tokens += sum(t for _, t in out)
        return out


class ScriptedPRM:
    """score() returns `script(steps)` for every prefix (any value: NaN, inf, out of range...)."""

    def __init__(self, script: Callable[[tuple[str, ...]], float]):
        self.script = script
        self.calls: list[tuple[tuple[str, ...], ...]] = []
        self.prefixes = 0

    async def __call__(self, question: str, steps_list: Sequence[Sequence[str]]) -> list[float]:
        self.calls.append(tuple(tuple(s) for s in steps_list))
        self.prefixes += len(steps_list)
        return [self.script(tuple(s)) for s in steps_list]


def never_ending(steps: tuple[str, ...], n: int, seed: int) -> list[str]:
    """A ScriptedPolicy script that never states an answer (distinct steps, seeded)."""
    return [f"step {len(steps)}.{(seed + i) % 1000}" for i in range(n)]
