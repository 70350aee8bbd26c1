"""MCTS* (Algorithm 2 of the paper; ALGORITHM.md "MCTS*"): one tree per question.

    result = await mcts_star(question, models, answers, cfg, seed)

Each simulation reads like the paper: select -> expand -> greedy MC rollout -> backup.
- select: from the root, while the node is expanded, go to the child maximising
  `v + c * sqrt(2 ln n_parent / n_child)` (unvisited: `v + u_unvisited`); ties go to the tree's RNG.
  Dead ends are skipped. A terminal leaf reached by selection is only backed up (a revisit).
- expand: `cfg.branch` samples at `cfg.temperature` (fewer when the node already holds steps kept
  from a rollout), empty and duplicate steps dropped (their tokens stay in the budget, counted
  again as `wasted_tokens`), all new children PRM-scored in one call, `v = clip(score, 0, 1)`. A
  node is terminal when its solution ends (`answers.ends`: it states an answer, or the policy
  ended its message there) or it sits at `cfg.max_depth` (or the self-critic says so, below). An
  expansion that leaves the node with no child makes it a dead end (counted in
  `budget.dead_ends`; nothing is backed up).
- rollout: from the best unvisited child (not terminal), up to `cfg.rollout_steps` steps, each
  sampling `cfg.rollout_branch` candidates scored in one call and keeping the PRM's favourite,
  stopping at a terminal step; `v_child <- (1 - alpha) v_child + alpha v_max` with v_max the best
  value seen (no rollout step scored: v unchanged); then `n_child += 1`. The authors drop rollout
  steps; with `cfg.keep_rollouts` each kept step becomes an unexpanded node (so the next expansion
  of its parent reuses it, and a rollout that reaches an answer leaves a solution in the tree).
- backup: from the expanded node to the root, `n += 1` and `v = sum(v_c n_c) / sum(n_c)` over
  visited children.
Stopping: all `cfg.num_simulations`, or earlier when no expandable leaf is left, or (with
`cfg.early_stop`, evaluation) at the gate: a selected leaf, or a new node that states an answer,
with `v >= cfg.end_gate`. The answer: the gated node; else, with `cfg.fallback_answer`, the
highest-value node in the tree (the authors' evaluation); else the best terminal node (highest v)
that states an answer. A chosen node that states no answer is finished by one greedy completion
(`finish`), whose steps complete its solution.

Self-critic (`cfg.self_critic`): each new child at depth >= 2 whose solution has not ended is shown
to the policy with CRITIC_SUFFIX appended to the question; a greedy reply that starts with "yes" or
"solved" (any case) marks it terminal ("No, not solved" does not), and its answer is read by
`finish` when its steps state none. Rollout steps are not checked.

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
from restmcts.search.baselines import sample_chain
from restmcts.search.calls import Calls
from restmcts.search.tree import Node, Tree, to_solution
from restmcts.search.types import Answers, Models, SearchResult, derive_seed

CRITIC_SUFFIX = "\nIs the problem already solved by the steps so far? Reply Yes or No."
_SOLVED = re.compile(r"^\W*(yes|solved)\b", re.IGNORECASE)


async def mcts_star(question: str, models: Models, answers: Answers, cfg: SearchConfig,
                    seed: int) -> SearchResult:
    tree = Tree(question, seed)
    calls = Calls(models, question)
    gated: Node | None = None
    for _ in range(cfg.num_simulations):
        if tree.open_leaves == 0:
            break  # fully explored: every leaf is terminal or a dead end
        calls.budget.simulations += 1
        node = select(tree, cfg)
        if cfg.early_stop and node is not tree.root and node.v >= cfg.end_gate:
            gated = node  # the authors' gate: a selected leaf the PRM already rates high enough
            break
        new = await simulate(tree, node, calls, answers, cfg)
        gated = next((c for c in new if cfg.early_stop and gate_reached(c, cfg)), None)
        if gated is not None:
            break
    best = await choose(tree, gated, calls, answers, cfg)
    solutions = tree.solutions()
    if best is not None and not best.terminal:
        solutions.append(to_solution(best))  # a finished inner node: its solution leaves the tree
    if best is None or best.answer is None:
        failure = (f"no terminal node states an answer (max_depth={cfg.max_depth}, {calls.budget.simulations} "
                   f"simulations, {tree.open_leaves} expandable leaves left)")
        return SearchResult("mcts_star", None, solutions, calls.budget, tree, failure)
    return SearchResult("mcts_star", to_solution(best), solutions, calls.budget, tree)


async def simulate(tree: Tree, node: Node, calls: Calls, answers: Answers, cfg: SearchConfig) -> list[Node]:
    """One simulation from the selected `node`; returns the nodes it added."""
    if node.terminal:
        backup(node)
        return []
    new = await expand(tree, node, calls, answers, cfg)
    if not node.children:
        return []
    unvisited = [c for c in node.children if c.n == 0] or node.children
    best = unvisited[argmax([c.v for c in unvisited], tree.rng)]
    if not best.terminal:
        v_max, kept = await rollout(tree, best, calls, answers, cfg)
        new += kept
        if v_max is not None:
            best.v = (1.0 - cfg.alpha) * best.v + cfg.alpha * v_max
    best.n += 1
    backup(node)
    return new


def gate_reached(node: Node, cfg: SearchConfig) -> bool:
    return node.terminal and node.answer is not None and node.v >= cfg.end_gate


async def choose(tree: Tree, gated: Node | None, calls: Calls, answers: Answers,
                 cfg: SearchConfig) -> Node | None:
    """The node the search answers with (see the module docstring), finished if it states no answer."""
    node = gated
    if node is None and cfg.fallback_answer:
        live = [n for n in tree.nodes[1:] if not n.dead_end]
        node = max(live, key=lambda n: (n.v, n.depth), default=None)  # ties: the deeper node
    if node is not None and node.answer is None:
        await finish(tree, node, calls, answers, cfg)
    if node is None or node.answer is None:
        return tree.best_terminal() or node
    return node


async def finish(tree: Tree, node: Node, calls: Calls, answers: Answers, cfg: SearchConfig) -> None:
    """Complete `node`'s solution greedily to read its answer: `node.finish` and `node.answer`."""
    spent = calls.budget.tokens
    chain = await sample_chain(calls, answers, cfg, derive_seed(tree.seed, "finish", node.id), 0.0, node.steps)
    node.tokens += calls.budget.tokens - spent
    node.finish = chain.steps[len(node.steps):]
    node.answer = chain.answer
    calls.budget.finished += 1


# ---- the four stages


def select(tree: Tree, cfg: SearchConfig) -> Node:
    """Walk down through expanded nodes by UCT to a leaf to expand, or a terminal leaf (never a dead end)."""
    node = tree.root
    while node.expanded:
        live = [c for c in node.children if not c.dead_end]
        log_n = math.log(max(node.n, 1))
        node = live[argmax([uct(c, log_n, cfg) for c in live], tree.rng)]
    return node


def uct(child: Node, log_n_parent: float, cfg: SearchConfig) -> float:
    if child.n == 0:
        return child.v + cfg.u_unvisited
    return child.v + cfg.exploration * math.sqrt(2.0 * log_n_parent / child.n)


async def expand(tree: Tree, node: Node, calls: Calls, answers: Answers, cfg: SearchConfig) -> list[Node]:
    """Add the node's new children, PRM-scored in one call (steps kept from a rollout count towards
    `cfg.branch`); a node left with no child is a dead end."""
    new: list[Node] = []
    wanted = cfg.branch - len(node.children)
    if wanted > 0:
        texts, tokens = await calls.propose(node.steps, wanted, derive_seed(tree.seed, "expand", node.id),
                                            cfg.temperature)
        node.tokens += sum(tokens)
        steps = calls.clean(texts, tokens, taken=[c.step for c in node.children])
        values = await calls.score([node.steps + (s,) for s in steps])
        node.prm_calls += len(steps)
        solved = await self_critic(tree, node, steps, calls, answers, cfg)
        for step, v, done in zip(steps, values, solved, strict=True):
            prefix = node.steps + (step,)
            terminal = done or answers.ends(prefix) or len(prefix) >= cfg.max_depth
            answer = answers.extract_answer(prefix) if terminal else None
            child = tree.add_child(node, step, v, terminal, answer)
            if done and answer is None:
                await finish(tree, child, calls, answers, cfg)
            new.append(child)
    if not node.children:
        calls.budget.dead_ends += 1
        tree.mark_dead_end(node)
        return []
    tree.mark_expanded(node)
    return new


async def self_critic(tree: Tree, node: Node, steps: Sequence[str], calls: Calls, answers: Answers,
                      cfg: SearchConfig) -> list[bool]:
    """Per new step: did the policy call the partial solution solved? (never at depth 1)"""
    depth = node.depth + 1
    if not cfg.self_critic or depth < 2 or depth >= cfg.max_depth:
        return [False] * len(steps)
    asks = [(i, node.steps + (s,)) for i, s in enumerate(steps) if not answers.ends(node.steps + (s,))]
    replies = await asyncio.gather(*(
        calls.propose(prefix, 1, derive_seed(tree.seed, "critic", node.id, i), 0.0,
                      question=calls.question + CRITIC_SUFFIX)
        for i, prefix in asks))
    solved = [False] * len(steps)
    for (i, _), (texts, tokens) in zip(asks, replies, strict=True):
        node.tokens += sum(tokens)
        solved[i] = any(_SOLVED.match(t) for t in texts)
    return solved


async def rollout(tree: Tree, child: Node, calls: Calls, answers: Answers,
                  cfg: SearchConfig) -> tuple[float | None, list[Node]]:
    """Greedy MC rollout from `child`: the highest PRM value seen (None if nothing was scored), and
    the nodes added for its steps (`cfg.keep_rollouts`; none otherwise)."""
    steps, v_max, at, kept = child.steps, None, child, []
    for k in range(cfg.rollout_steps):
        texts, tokens = await calls.propose(steps, cfg.rollout_branch,
                                            derive_seed(tree.seed, "rollout", child.id, k), cfg.temperature)
        child.tokens += sum(tokens)
        candidates = calls.clean(texts, tokens)
        if not candidates:
            break
        values = await calls.score([steps + (s,) for s in candidates])
        child.prm_calls += len(candidates)
        best = argmax(values, tree.rng)
        steps = steps + (candidates[best],)
        v_max = values[best] if v_max is None else max(v_max, values[best])
        done = answers.ends(steps) or len(steps) >= cfg.max_depth
        if cfg.keep_rollouts and at is not None:
            at = keep(tree, at, steps, values[best], done, answers)
            kept += [at] if at is not None else []
        if done:
            break
    return v_max, kept


def keep(tree: Tree, parent: Node, steps: tuple[str, ...], v: float, done: bool, answers: Answers) -> Node | None:
    """The rollout step `steps[-1]` as an unexpanded child of `parent` (an existing child with the
    same step is reused). None once the rollout leaves the tree's frontier (an expanded or
    terminal parent), where the step is not kept."""
    if parent.expanded or parent.terminal:
        return None
    same = next((c for c in parent.children if c.step == steps[-1]), None)
    if same is not None:
        return same
    answer = answers.extract_answer(steps) if done else None
    return tree.add_child(parent, steps[-1], v, done, answer, expands_parent=False)


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
