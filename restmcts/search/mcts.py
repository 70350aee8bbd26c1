"""MCTS* (Algorithm 2 of the paper; ALGORITHM.md "MCTS*"): one tree per question.

    result = await mcts_star(question, models, answers, cfg, seed)

Each simulation reads like the paper: select -> expand -> greedy MC rollout -> backup.
- select: from the root, while the node has children, go to the child maximising
  `v + c * sqrt(2 ln n_parent / n_child)` (unvisited: `v + u_unvisited`); ties go to the tree's RNG.
  Dead ends are skipped. A terminal leaf reached by selection is only backed up (a revisit).
- expand: `cfg.branch` samples at `cfg.temperature`, empty and duplicate steps dropped, all new
  children PRM-scored in one call, `v = clip(score, 0, 1)`. A node is terminal when its step states
  an answer or it sits at `cfg.max_depth` (or the self-critic says so, below). An expansion with no
  usable step makes the node a dead end (counted in `budget.dead_ends`; nothing is backed up).
- rollout: from the best new child (not terminal), up to `cfg.rollout_steps` steps, each sampling
  `cfg.rollout_branch` candidates scored in one call and keeping the PRM's favourite, stopping at a
  terminal step; `v_child <- (1 - alpha) v_child + alpha v_max` with v_max the best value seen
  (no rollout step scored: v unchanged); then `n_child += 1`. Rollout nodes are not added.
- backup: from the expanded node to the root, `n += 1` and `v = sum(v_c n_c) / sum(n_c)` over
  visited children.
Stopping: all `cfg.num_simulations`, or earlier when no expandable leaf is left, or (with
`cfg.early_stop`) as soon as a terminal node with an answer has `v >= cfg.end_gate`. The answer is
the best terminal node (highest v) that states an answer.

Self-critic (`cfg.self_critic`): each new non-terminal child at depth >= 2 is shown to the policy
with CRITIC_SUFFIX appended to the question; a greedy reply that starts with "yes" or "solved"
(any case) marks it terminal ("No, not solved" does not). Rollout steps are not checked.

Seeds: every model call's seed is `derive_seed(tree seed, call kind, node id[, step])`, so a tree
replays exactly against deterministic models.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Sequence

from restmcts.config import SearchConfig
from restmcts.search.calls import Calls
from restmcts.search.tree import Node, Tree, to_solution
from restmcts.search.types import Answers, Models, SearchResult, derive_seed

CRITIC_SUFFIX = "\nIs the problem already solved by the steps so far? Reply Yes or No."
_SOLVED = re.compile(r"^\W*(yes|solved)\b", re.IGNORECASE)


async def mcts_star(question: str, models: Models, answers: Answers, cfg: SearchConfig,
                    seed: int) -> SearchResult:
    tree = Tree(question, seed)
    calls = Calls(models, question)
    for _ in range(cfg.num_simulations):
        if tree.open_leaves == 0:
            break  # fully explored: every leaf is terminal or a dead end
        calls.budget.simulations += 1
        new = await simulate(tree, calls, answers, cfg)
        if cfg.early_stop and any(gate_reached(c, cfg) for c in new):
            break
    best = tree.best_terminal()
    failure = None if best is not None else (
        f"no terminal node states an answer (max_depth={cfg.max_depth}, "
        f"{calls.budget.simulations} simulations, {tree.open_leaves} expandable leaves left)")
    return SearchResult("mcts_star", to_solution(best) if best else None, tree.solutions(),
                        calls.budget, tree, failure)


async def simulate(tree: Tree, calls: Calls, answers: Answers, cfg: SearchConfig) -> list[Node]:
    """One simulation; returns the children it added."""
    node = select(tree, cfg)
    if node.terminal:
        backup(node)
        return []
    children = await expand(tree, node, calls, answers, cfg)
    if not children:
        return []
    best = children[argmax([c.v for c in children], tree.rng)]
    if not best.terminal:
        v_max = await rollout(tree, best, calls, answers, cfg)
        if v_max is not None:
            best.v = (1.0 - cfg.alpha) * best.v + cfg.alpha * v_max
    best.n += 1
    backup(node)
    return children


def gate_reached(node: Node, cfg: SearchConfig) -> bool:
    return node.terminal and node.answer is not None and node.v >= cfg.end_gate


# ---- the four stages


def select(tree: Tree, cfg: SearchConfig) -> Node:
    """Walk down by UCT to a leaf that is expandable or terminal (never a dead end)."""
    node = tree.root
    while node.children:
        live = [c for c in node.children if not c.dead_end]
        log_n = math.log(max(node.n, 1))
        node = live[argmax([uct(c, log_n, cfg) for c in live], tree.rng)]
    return node


def uct(child: Node, log_n_parent: float, cfg: SearchConfig) -> float:
    if child.n == 0:
        return child.v + cfg.u_unvisited
    return child.v + cfg.exploration * math.sqrt(2.0 * log_n_parent / child.n)


async def expand(tree: Tree, node: Node, calls: Calls, answers: Answers, cfg: SearchConfig) -> list[Node]:
    """Add the node's children, PRM-scored in one call; a node with no usable step is a dead end."""
    texts, tokens = await calls.propose(node.steps, cfg.branch, derive_seed(tree.seed, "expand", node.id),
                                        cfg.temperature)
    node.tokens += tokens
    steps = calls.clean(texts)
    if not steps:
        calls.budget.dead_ends += 1
        tree.mark_dead_end(node)
        return []
    values = await calls.score([node.steps + (s,) for s in steps])
    node.prm_calls += len(steps)
    solved = await self_critic(tree, node, steps, calls, answers, cfg)
    children = []
    for step, v, done in zip(steps, values, solved, strict=True):
        prefix = node.steps + (step,)
        terminal = done or answers.is_terminal(step) or len(prefix) >= cfg.max_depth
        answer = answers.extract_answer(prefix) if terminal else None
        children.append(tree.add_child(node, step, v, terminal, answer))
    return children


async def self_critic(tree: Tree, node: Node, steps: Sequence[str], calls: Calls, answers: Answers,
                      cfg: SearchConfig) -> list[bool]:
    """Per new step: did the policy call the partial solution solved? (never at depth 1)"""
    depth = node.depth + 1
    if not cfg.self_critic or depth < 2 or depth >= cfg.max_depth:
        return [False] * len(steps)
    asks = [(i, node.steps + (s,)) for i, s in enumerate(steps) if not answers.is_terminal(s)]
    replies = await asyncio.gather(*(
        calls.propose(prefix, 1, derive_seed(tree.seed, "critic", node.id, i), 0.0,
                      question=calls.question + CRITIC_SUFFIX)
        for i, prefix in asks))
    solved = [False] * len(steps)
    for (i, _), (texts, tokens) in zip(asks, replies, strict=True):
        node.tokens += tokens
        solved[i] = any(_SOLVED.match(t) for t in texts)
    return solved


async def rollout(tree: Tree, child: Node, calls: Calls, answers: Answers, cfg: SearchConfig) -> float | None:
    """Greedy MC rollout from `child`; the highest PRM value seen (None if nothing was scored)."""
    steps, v_max = child.steps, None
    for k in range(cfg.rollout_steps):
        texts, tokens = await calls.propose(steps, cfg.rollout_branch,
                                            derive_seed(tree.seed, "rollout", child.id, k), cfg.temperature)
        child.tokens += tokens
        candidates = calls.clean(texts)
        if not candidates:
            break
        values = await calls.score([steps + (s,) for s in candidates])
        child.prm_calls += len(candidates)
        best = argmax(values, tree.rng)
        steps = steps + (candidates[best],)
        v_max = values[best] if v_max is None else max(v_max, values[best])
        if answers.is_terminal(candidates[best]) or len(steps) >= cfg.max_depth:
            break
    return v_max


def backup(node: Node | None) -> None:
    """From `node` to the root: n += 1, v = visit-weighted mean of the visited children's v."""
    while node is not None:
        node.n += 1
        visits = sum(c.n for c in node.children)
        if visits > 0:
            node.v = sum(c.v * c.n for c in node.children) / visits
        node = node.parent


def argmax(scores: Sequence[float], rng: random.Random) -> int:
    """The index of the highest score; exact ties go to `rng` (the tree's seeded RNG)."""
    top = max(scores)
    best = [i for i, s in enumerate(scores) if s == top]
    return best[0] if len(best) == 1 else rng.choice(best)
