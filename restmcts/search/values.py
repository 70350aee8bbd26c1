"""Value targets inferred from a finished, checked tree (ALGORITHM.md "Inferring value targets").

For every node kept (its subtree holds a terminal leaf; the root excluded):
- reasoning distance m: 1 at a correct terminal leaf; `1 + min(m of children on a correct path)`
  on a correct path; a node off every correct path inherits m from its nearest ancestor that has one
  (the code's convention, `m_code = m_paper + 1`);
- step label r = +1 on a path that reaches a correct answer, else -1;
- value, top down from `v_0 = 0`: `v_k = max(0, v_{k-1} + (1 - v_{k-1}) * r / m_k)`, the paper's
  Eq. 1 with the weight of Eq. 2. On a correct path of length K this gives `v_k = k / K`, and every
  value lies in [0, 1] (Theorem 1).
A tree with no correct leaf yields no samples. Terminal nodes must have been checked with
`mark_correct` first; `correct=None` counts as not correct.
"""

from __future__ import annotations

from restmcts.search.tree import Tree
from restmcts.search.types import ValueSample


def infer_values(tree: Tree) -> list[ValueSample]:
    distance, kept = _distances(tree)
    if distance[0] == 0:
        return []  # no correct leaf: the tree teaches nothing about values
    value = [0.0] * len(tree.nodes)
    samples = []
    for node in tree.nodes[1:]:  # parents come before children (ids follow creation order)
        if not kept[node.id]:
            continue
        parent = node.parent.id if node.parent is not None else 0
        on_path = distance[node.id] > 0
        if not on_path:
            distance[node.id] = distance[parent]  # inherit from the nearest ancestor with one
        r = 1.0 if on_path else -1.0
        v_prev = value[parent]
        value[node.id] = max(0.0, v_prev + (1.0 - v_prev) * r / distance[node.id])
        samples.append(ValueSample(node.steps, value[node.id], distance[node.id], on_path))
    return samples


def _distances(tree: Tree) -> tuple[list[int], list[bool]]:
    """Bottom up: m for nodes on a correct path (0 = off every correct path), and whether each
    node's subtree holds a terminal leaf (unfinished branches are pruned)."""
    distance = [0] * len(tree.nodes)
    kept = [False] * len(tree.nodes)
    for node in reversed(tree.nodes):  # children come after parents
        below = [distance[c.id] for c in node.children if distance[c.id] > 0]
        if node.terminal and node.correct:
            distance[node.id] = 1
        elif below:
            distance[node.id] = 1 + min(below)
        kept[node.id] = node.terminal or any(kept[c.id] for c in node.children)
    return distance, kept
