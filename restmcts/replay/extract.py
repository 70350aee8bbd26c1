"""From a finished search to replay records (Algorithm 1, lines "extract D_G and D_V").

`judge` checks every terminal solution against the gold answer (each distinct answer once);
`to_records` turns one question's result into Trace rows (every terminal solution, the chosen
one flagged) and, for MCTS*, ValueRecord rows inferred from the tree (ALGORITHM.md, "Inferring
value targets").

`export_tree` turns a judged MCTS* tree into the JSON a pass writes under `OUT/trees/` for
`search.export_trees` (FORMAT below) and `python -m restmcts.viewer` draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from restmcts.replay import Trace, ValueRecord
from restmcts.search import (
    Budget,
    Checkpoint,
    Node,
    SearchResult,
    Solution,
    Tree,
    ValueSample,
    infer_values,
    mark_correct,
)
from restmcts.tasks import Question


@dataclass
class QuestionOutcome:
    """Everything one question contributes to the replay, plus what it cost."""

    question_id: str
    traces: list[Trace]
    values: list[ValueRecord]
    solved: bool  # at least one verified-correct solution
    answered_correctly: bool  # the chosen solution is correct
    budget: Budget
    failure: str | None = None
    tree: dict[str, Any] | None = None  # export_tree's JSON, for the questions a pass exports
    checkpoints: list[Checkpoint] = dataclasses.field(default_factory=list)  # anytime MCTS* (search.record_at)


def judge(result: SearchResult, check: Callable[[str | None], bool]) -> SearchResult:
    """Set `correct` on every solution (and on the tree's terminal nodes) using `check`."""
    cache: dict[str | None, bool] = {}

    def cached(answer: str | None) -> bool:
        if answer not in cache:
            cache[answer] = check(answer) if answer is not None else False
        return cache[answer]

    if result.tree is not None:
        mark_correct(result.tree, cached)

    def mark(s: Solution) -> Solution:
        return dataclasses.replace(s, correct=cached(s.answer))

    result.solutions = [mark(s) for s in result.solutions]
    result.best = mark(result.best) if result.best is not None else None
    result.checkpoints = [dataclasses.replace(c, best=mark(c.best) if c.best is not None else None)
                          for c in result.checkpoints]
    return result


def to_records(question: Question, result: SearchResult, iteration: int,
               export: bool = False) -> QuestionOutcome:
    """Rows for the replay; `result` must have been judged. With `export`, the outcome also
    carries the tree as `export_tree` writes it (None for strategies that grow no tree)."""
    tokens = result.budget.tokens
    best = tuple(result.best.steps) if result.best is not None else None
    traces, flagged = [], False
    for s in result.solutions:
        chosen = not flagged and tuple(s.steps) == best
        flagged = flagged or chosen
        traces.append(Trace(question.id, question.question, tuple(s.steps), s.answer, bool(s.correct),
                            tokens, result.strategy, iteration, chosen=chosen, value=s.value))
    values, inferred = [], []
    if result.tree is not None:
        inferred = infer_values(result.tree)
        values = [
            ValueRecord(question.id, question.question, tuple(v.steps), float(v.value), int(v.distance),
                        bool(v.on_correct_path), iteration)
            for v in inferred
        ]
    best_correct = bool(result.best is not None and result.best.correct)
    return QuestionOutcome(
        question_id=question.id,
        traces=traces,
        values=values,
        solved=any(t.correct for t in traces),
        answered_correctly=best_correct,
        budget=result.budget,
        failure=result.failure,
        tree=export_tree(question, result, iteration, inferred) if export and result.tree is not None else None,
        checkpoints=result.checkpoints,
    )


# --------------------------------------------------------------------------- tree export

FORMAT = "restmcts-tree/1"
"""The exported tree, one JSON object:

    format, question_id, question, gold_answer, strategy, iteration, num_nodes,
    chosen: {steps, answer, correct, value} | null     the answer the strategy committed to
    budget: the search's Budget fields (tokens, policy_calls, prm_calls, ...)
    failure: why no answer, or null
    root: nested nodes, each
        {id, step, depth, n, v, prior, terminal, answer, correct, dead_end, tokens, prm_calls,
         on_chosen_path, on_correct_path,
         target: {value, distance, on_correct_path} | null,   the inferred value target (m = distance)
         children: [...]}
`target` is null where value inference gives none: a node whose subtree has no terminal leaf, or
every node of a tree without a correct answer.
"""


def export_tree(question: Question, result: SearchResult, iteration: int,
                inferred: Sequence[ValueSample] | None = None) -> dict[str, Any]:
    """The judged tree of `result` as FORMAT's JSON-ready dict (`inferred`: infer_values(tree))."""
    tree: Tree = result.tree
    if inferred is None:
        inferred = infer_values(tree)
    targets = _targets(tree, inferred)
    chosen_node = _chosen_node(tree, result.best)
    chosen_path = set()
    while chosen_node is not None:
        chosen_path.add(chosen_node.id)
        chosen_node = chosen_node.parent
    correct_below = _correct_below(tree)

    def node(n: Node, d: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in d.items() if k != "children"}
        target = targets.get(n.id)
        out.update(id=n.id, depth=n.depth, on_chosen_path=n.id in chosen_path,
                   on_correct_path=correct_below[n.id],
                   target=None if target is None else {"value": round(float(target.value), 6),
                                                       "distance": int(target.distance),
                                                       "on_correct_path": bool(target.on_correct_path)})
        out["children"] = [node(c, cd) for c, cd in zip(n.children, d["children"], strict=True)]
        return out

    best = result.best
    return {
        "format": FORMAT,
        "question_id": question.id,
        "question": question.question,
        "gold_answer": question.answer,
        "strategy": result.strategy,
        "iteration": iteration,
        "num_nodes": len(tree.nodes),
        "chosen": None if best is None else {"steps": list(best.steps), "answer": best.answer,
                                             "correct": best.correct, "value": best.value},
        "budget": dataclasses.asdict(result.budget),
        "failure": result.failure,
        "root": node(tree.root, tree.to_dict()),
    }


def _targets(tree: Tree, inferred: Sequence[ValueSample]) -> dict[int, ValueSample]:
    """Node id -> its inferred target. infer_values yields one sample per kept node (a node whose
    subtree holds a terminal leaf, root excluded) in node-id order, so the two line up."""
    kept = [False] * len(tree.nodes)
    for n in reversed(tree.nodes):
        kept[n.id] = n.terminal or any(kept[c.id] for c in n.children)
    ids = [n.id for n in tree.nodes[1:] if kept[n.id]]
    if len(ids) == len(inferred) and all(tree.nodes[i].steps == tuple(s.steps) for i, s in zip(ids, inferred, strict=True)):
        return dict(zip(ids, inferred, strict=True))
    by_steps = {tuple(s.steps): s for s in inferred}  # a different pruning rule: match by prefix
    return {n.id: by_steps[n.steps] for n in tree.nodes[1:] if n.steps in by_steps}


def _chosen_node(tree: Tree, best: Solution | None) -> Node | None:
    """The node the chosen solution ends at (the highest-valued one if steps repeat); a node
    finished by a greedy completion matches by its steps plus the completion's."""
    if best is None:
        return None
    steps = tuple(best.steps)
    return max((n for n in tree.nodes if n.steps + n.finish == steps), key=lambda n: n.v, default=None)


def _correct_below(tree: Tree) -> list[bool]:
    """Per node: its subtree holds a terminal node checked correct."""
    below = [False] * len(tree.nodes)
    for n in reversed(tree.nodes):
        below[n.id] = bool(n.terminal and n.correct) or any(below[c.id] for c in n.children)
    return below
