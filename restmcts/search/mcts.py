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

Anytime (`cfg.record_at`, the evaluation's budget axis from one pass): at each listed simulation
count K the tree records a Checkpoint: what this same search, run with `num_simulations = K`,
would have answered and spent. So one pass at the largest budget gives every smaller budget's
point, as separate passes would (same seed, same tree up to K):
- K simulations ran and no gate fired: `choose`'s rule on the tree as it stands (the fallback's
  highest-value node, else the best terminal), valued by its v at K. Tokens and PRM calls are
  those spent by K plus, when the chosen node states no answer, its greedy completion
  (`finish_tokens`; a K-run pays them too).
- The tree stopped before K (a gate fired, or nothing is left to expand): the search's own final
  answer and spend, for every such K. With `cfg.early_stop` the gate still ends the tree: a
  K-run stops there, so its answer and its tokens are the gate's. Going on past the gate would
  only buy tokens that no checkpoint of the authors' search may count (a later checkpoint using
  them would be another algorithm, one without the gate: `early_stop: false`).
Recording does not change the tree: a checkpoint picks without touching the tree's RNG or budget,
and the completions it needs run after the last simulation, on a budget of their own (so the
result's `budget`, tree and answer are those of a run without checkpoints). The one way a
checkpoint can differ from a K-run is knowledge gathered after K: with real chat models, a prefix
where a later expansion saw the policy end its message (`answers.ends`) ends a completion there.
The pass pays these completions too; they are in the checkpoints' tokens, not in `budget`.

Self-critic (`cfg.self_critic`): each new child at depth >= 2 whose solution has not ended is shown
to the policy with CRITIC_SUFFIX appended to the question; a greedy reply that starts with "yes" or
"solved" (any case) marks it terminal ("No, not solved" does not), and its answer is read by
`finish` when its steps state none. Rollout steps are not checked.

Seeds: every model call's seed is `derive_seed(tree seed, call kind, node id[, step])`, so a tree
replays exactly against deterministic models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from restmcts.config import SearchSettings
from restmcts.search.baselines import sample_chain
from restmcts.search.calls import Calls
from restmcts.search.tree import Node, Tree, to_solution
from restmcts.search.types import Answers, Checkpoint, Models, SearchResult, Solution, derive_seed

CRITIC_SUFFIX = "\nIs the problem already solved by the steps so far? Reply Yes or No."
_SOLVED = re.compile(r"^\W*(yes|solved)\b", re.IGNORECASE)


async def mcts_star(question: str, models: Models, answers: Answers, cfg: SearchSettings,
                    seed: int) -> SearchResult:
    tree = Tree(question, seed)
    calls = Calls(models, question)
    gated: Node | None = None
    marks: list[_Mark] = []
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
        if calls.budget.simulations in cfg.record_at and calls.budget.simulations < cfg.num_simulations:
            marks.append(mark(tree, calls, cfg))
    picked = pick(tree, gated, cfg)
    completed = picked is not None and picked.answer is None  # choose completes it greedily
    tokens, prm_calls = calls.budget.tokens, calls.budget.prm_calls
    best = await choose(tree, gated, calls, answers, cfg)
    completions: dict[int, _Completion] = {}  # by node id: a checkpoint that picked the same node reuses it
    if completed:
        completions[picked.id] = _Completion(picked.steps + picked.finish, picked.answer,
                                             calls.budget.tokens - tokens, calls.budget.prm_calls - prm_calls)
    solutions = tree.solutions()
    if best is not None and not best.terminal:
        solutions.append(to_solution(best))  # a finished inner node: its solution leaves the tree
    answered = best is not None and best.answer is not None
    final = Checkpoint(0, calls.budget.simulations, calls.budget.tokens, calls.budget.prm_calls,
                       to_solution(best) if answered else None, best is not None and best is gated,
                       completions[picked.id].tokens if completed else 0)
    checkpoints = await record(tree, marks, completions, final, calls, answers, cfg)
    if not answered:
        failure = (f"no terminal node states an answer (max_depth={cfg.max_depth}, {calls.budget.simulations} "
                   f"simulations, {tree.open_leaves} expandable leaves left)")
        return SearchResult("mcts_star", None, solutions, calls.budget, tree, failure, checkpoints)
    return SearchResult("mcts_star", to_solution(best), solutions, calls.budget, tree, checkpoints=checkpoints)


async def simulate(tree: Tree, node: Node, calls: Calls, answers: Answers, cfg: SearchSettings) -> list[Node]:
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


def gate_reached(node: Node, cfg: SearchSettings) -> bool:
    return node.terminal and node.answer is not None and node.v >= cfg.end_gate


async def choose(tree: Tree, gated: Node | None, calls: Calls, answers: Answers,
                 cfg: SearchSettings) -> Node | None:
    """The node the search answers with (see the module docstring), finished if it states no answer."""
    node = pick(tree, gated, cfg)
    if node is not None and node.answer is None:
        await finish(tree, node, calls, answers, cfg)
    if node is None or node.answer is None:
        return tree.best_terminal() or node
    return node


def pick(tree: Tree, gated: Node | None, cfg: SearchSettings) -> Node | None:
    """`choose`'s node before any completion: the gated node, else (`cfg.fallback_answer`) the
    highest-value live node, else None (then the best terminal answers). Reads the tree only."""
    if gated is not None or not cfg.fallback_answer:
        return gated
    live = [n for n in tree.nodes[1:] if not n.dead_end]
    return max(live, key=lambda n: (n.v, n.depth), default=None)  # ties: the deeper node


async def finish(tree: Tree, node: Node, calls: Calls, answers: Answers, cfg: SearchSettings) -> None:
    """Complete `node`'s solution greedily to read its answer: `node.finish` and `node.answer`."""
    spent = calls.budget.tokens
    chain = await sample_chain(calls, answers, cfg, derive_seed(tree.seed, "finish", node.id), 0.0, node.steps)
    node.tokens += calls.budget.tokens - spent
    node.finish = chain.steps[len(node.steps):]
    node.answer = chain.answer
    calls.budget.finished += 1


# ---- anytime checkpoints


@dataclass(frozen=True)
class _Mark:
    """What `choose` would answer after `at` simulations, as the tree stood then (no gate fired)."""

    at: int
    tokens: int
    prm_calls: int
    node: Node | None  # pick()'s node
    answer: Solution | None  # its solution, when it states an answer (valued by its v then)
    value: float  # its v then
    fallback: Solution | None  # the best terminal's solution then: the answer when no node gives one


@dataclass(frozen=True)
class _Completion:
    """A node's greedy completion: the whole solution, its answer and what the completion cost."""

    steps: tuple[str, ...]
    answer: str | None
    tokens: int
    prm_calls: int


def mark(tree: Tree, calls: Calls, cfg: SearchSettings) -> _Mark:
    """Note what `choose` would answer now; reads the tree and the budget only (no model call, no RNG)."""
    node = pick(tree, None, cfg)
    best = tree.best_terminal()
    return _Mark(calls.budget.simulations, calls.budget.tokens, calls.budget.prm_calls, node,
                 to_solution(node) if node is not None and node.answer is not None else None,
                 node.v if node is not None else 0.0, to_solution(best) if best is not None else None)


async def record(tree: Tree, marks: Sequence[_Mark], completions: dict[int, _Completion], final: Checkpoint,
                 calls: Calls, answers: Answers, cfg: SearchSettings) -> list[Checkpoint]:
    """One Checkpoint per `cfg.record_at` entry, in order: each mark taken during the search (a
    chosen node that states no answer is completed greedily now, on a budget of its own, once per
    node), and the search's `final` answer and spend for every count it did not reach."""
    out = {}
    for m in marks:
        best, done = m.answer, _Completion((), None, 0, 0)
        if best is None and m.node is not None:
            if m.node.id not in completions:
                own = Calls(calls.models, calls.question)
                chain = await sample_chain(own, answers, cfg, derive_seed(tree.seed, "finish", m.node.id), 0.0,
                                           m.node.steps)
                completions[m.node.id] = _Completion(chain.steps, chain.answer, own.budget.tokens,
                                                     own.budget.prm_calls)
            done = completions[m.node.id]
            best = Solution(done.steps, done.answer, m.value) if done.answer is not None else None
        out[m.at] = Checkpoint(m.at, m.at, m.tokens + done.tokens, m.prm_calls + done.prm_calls,
                               best or m.fallback, finish_tokens=done.tokens)
    return [out[at] if at in out else dataclasses.replace(final, at=at) for at in sorted(set(cfg.record_at))]


# ---- the four stages


def select(tree: Tree, cfg: SearchSettings) -> Node:
    """Walk down through expanded nodes by UCT to a leaf to expand, or a terminal leaf (never a dead end)."""
    node = tree.root
    while node.expanded:
        live = [c for c in node.children if not c.dead_end]
        log_n = math.log(max(node.n, 1))
        node = live[argmax([uct(c, log_n, cfg) for c in live], tree.rng)]
    return node


def uct(child: Node, log_n_parent: float, cfg: SearchSettings) -> float:
    if child.n == 0:
        return child.v + cfg.u_unvisited
    return child.v + cfg.exploration * math.sqrt(2.0 * log_n_parent / child.n)


async def expand(tree: Tree, node: Node, calls: Calls, answers: Answers, cfg: SearchSettings) -> list[Node]:
    """Add the node's new children, PRM-scored in one call (steps kept from a rollout count towards
    `cfg.branch`); a node left with no child is a dead end."""
    new: list[Node] = []
    wanted = cfg.branch - len(node.children)
    if wanted > 0:
        texts, tokens = await calls.propose(node.steps, wanted, derive_seed(tree.seed, "expand", node.id),
                                            cfg.temperature)
        node.tokens += sum(tokens)
        steps = calls.clean(texts, tokens, taken=[c.step for c in node.children])
        values = await charged_score(calls, node, [node.steps + (s,) for s in steps])
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
                      cfg: SearchSettings) -> list[bool]:
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
                  cfg: SearchSettings) -> tuple[float | None, list[Node]]:
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
        values = await charged_score(calls, child, [steps + (s,) for s in candidates])
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


async def charged_score(calls: Calls, node: Node, prefixes: list[tuple[str, ...]]) -> list[float]:
    """PRM values of `prefixes`; the prefixes this call sends (not those already scored) are charged to `node`."""
    sent = calls.budget.prm_calls
    values = await calls.score(prefixes)
    node.prm_calls += calls.budget.prm_calls - sent
    return values


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
