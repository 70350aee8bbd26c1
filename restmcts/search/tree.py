"""The search tree of MCTS* (Algorithm 2): nodes `(p_C, n_C, v_C)` with parent links.

Contracts:
- Node ids are dense and assigned in creation order (`tree.nodes[i].id == i`, root is 0), so a
  tree grown from the same seed against deterministic models replays node for node.
- A terminal node is a leaf: it states a final answer or sits at `max_depth` (or the self-critic
  said "solved"). A dead end is a leaf whose expansion produced no usable step; it is never
  selected again.
- `expanded` says the node's own expansion ran. Selection walks down through expanded nodes
  only, so a node that has children from a kept rollout (`search.keep_rollouts`) but was never
  expanded is still a leaf to expand. `open_leaves` counts nodes neither expanded, terminal nor
  dead: when it reaches 0 the tree is fully explored.
- `finish` holds the steps of a greedy completion that was run after the node to read an answer
  from it (the evaluation's fallback, or a node the self-critic called solved); the node's
  solution is `steps + finish`.
- `to_dict()` / `from_dict()` use nested `{"step", "terminal", "correct", "children", ...}`
  dicts (root step ""); `from_dict` needs only those four keys and reads the others when present.
- Per-node accounting: `tokens` and `prm_calls` are what the calls made *at* this node cost
  (its expansion with the self-critic checks of the new children, and the rollout from it), so
  summing them over the tree gives the search's policy tokens and PRM calls.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from restmcts.search.types import Solution


@dataclass(eq=False, slots=True)
class Node:
    id: int
    step: str  # s_k, the step text ("" at the root)
    steps: tuple[str, ...]  # p_k = (s_1, ..., s_k), the partial solution from the root
    parent: Node | None
    n: int = 0  # visit count n_C
    v: float = 0.0  # quality value v_C in [0, 1]
    prior: float = 0.0  # the PRM's score of p_C when the node was added (v before rollouts and backups)
    terminal: bool = False
    answer: str | None = None  # extracted final answer (terminal nodes only)
    correct: bool | None = None  # set by mark_correct on terminal nodes
    dead_end: bool = False  # expanded to nothing usable; selection skips it
    expanded: bool = False  # its expansion ran (selection descends through expanded nodes only)
    finish: tuple[str, ...] = ()  # greedy completion steps after this node that gave its answer
    tokens: int = 0  # policy tokens spent by calls made at this node
    prm_calls: int = 0  # prefixes the PRM scored for calls made at this node
    children: list[Node] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len(self.steps)


class Tree:
    """One question's tree. `rng` is the tree's own seeded RNG (selection tie-breaks)."""

    def __init__(self, question: str = "", seed: int = 0):
        self.question = question
        self.seed = seed
        self.rng = random.Random(seed)
        self.root = Node(0, "", (), None)
        self.nodes: list[Node] = [self.root]
        self.open_leaves = 1  # leaves that are neither terminal nor dead ends (still expandable)

    def add_child(self, parent: Node, step: str, v: float = 0.0, terminal: bool = False,
                  answer: str | None = None, expands_parent: bool = True) -> Node:
        """A new child of `parent` (PRM value `v`). It marks the parent expanded, unless it is a
        step kept from a rollout (`expands_parent=False`)."""
        if expands_parent:
            self.mark_expanded(parent)
        child = Node(len(self.nodes), step, parent.steps + (step,), parent, v=v, prior=v, terminal=terminal,
                     answer=answer)
        parent.children.append(child)
        self.nodes.append(child)
        self.open_leaves += not terminal
        return child

    def mark_expanded(self, node: Node) -> None:
        """`node`'s expansion ran: it stops being an expandable leaf."""
        if self.is_open(node):
            self.open_leaves -= 1
        node.expanded = True

    def mark_dead_end(self, node: Node) -> None:
        """No usable step follows `node`; parents whose children are all dead ends die too."""
        if self.is_open(node):
            self.open_leaves -= 1
        node.expanded = True
        node.dead_end = True
        parent = node.parent
        while parent is not None and all(c.dead_end for c in parent.children):
            parent.dead_end = True
            parent = parent.parent

    @staticmethod
    def is_open(node: Node) -> bool:
        return not (node.expanded or node.terminal or node.dead_end)

    def terminals(self) -> Iterator[Node]:
        return (node for node in self.nodes if node.terminal)

    def best_terminal(self) -> Node | None:
        """The terminal node with the highest value among those that state an answer."""
        answered = [node for node in self.terminals() if node.answer is not None]
        return max(answered, key=lambda node: node.v, default=None)

    def solutions(self) -> list[Solution]:
        """Every terminal path, valued by its node's v."""
        return [to_solution(node) for node in self.terminals()]

    # ---- export

    def to_dict(self) -> dict[str, Any]:
        return _node_dict(self.root)

    @classmethod
    def from_dict(cls, d: dict[str, Any], question: str = "", seed: int = 0) -> Tree:
        tree = cls(question, seed)
        tree.root.n, tree.root.v = int(d.get("n", 0)), float(d.get("v", 0.0))
        _add_children(tree, tree.root, d)
        if d.get("expanded", bool(tree.root.children)):
            tree.mark_expanded(tree.root)
        return tree


def to_solution(node: Node) -> Solution:
    return Solution(node.steps + node.finish, node.answer, node.v, node.correct)


def mark_correct(tree: Tree, check: Callable[[str | None], bool]) -> None:
    """Set `correct` on every terminal node from `check(node.answer)` (Algorithm 1, line 'verify')."""
    for node in tree.terminals():
        node.correct = bool(check(node.answer))


def _node_dict(node: Node) -> dict[str, Any]:
    return {
        "step": node.step, "terminal": node.terminal, "correct": node.correct, "answer": node.answer,
        "n": node.n, "v": node.v, "prior": node.prior, "dead_end": node.dead_end,
        "expanded": node.expanded, "finish": list(node.finish), "tokens": node.tokens,
        "prm_calls": node.prm_calls, "children": [_node_dict(c) for c in node.children],
    }


def _add_children(tree: Tree, parent: Node, d: dict[str, Any]) -> None:
    for cd in d.get("children", []):
        child = tree.add_child(parent, cd["step"], float(cd.get("v", 0.0)), bool(cd["terminal"]),
                               cd.get("answer"), expands_parent=False)
        child.correct = cd.get("correct")
        child.n = int(cd.get("n", 0))
        child.prior = float(cd.get("prior", child.v))
        child.tokens, child.prm_calls = int(cd.get("tokens", 0)), int(cd.get("prm_calls", 0))
        child.finish = tuple(cd.get("finish", ()))
        _add_children(tree, child, cd)
        if cd.get("dead_end"):
            tree.mark_dead_end(child)
        elif cd.get("expanded", bool(child.children)):
            tree.mark_expanded(child)
