"""Value inference (ALGORITHM.md "Inferring value targets"): golden trees and Theorem 1."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restmcts.search import Tree, ValueSample, infer_values, mark_correct


def leaf(step, correct=None, terminal=True):
    return {"step": step, "terminal": terminal, "correct": correct, "children": []}


def inner(step, *children):
    return {"step": step, "terminal": False, "correct": None, "children": list(children)}


def by_path(samples: list[ValueSample]) -> dict[tuple[str, ...], ValueSample]:
    return {s.steps: s for s in samples}


# root
# ├─ a               on path (m=2)
# │  ├─ a1           correct leaf (m=1)
# │  └─ a2           wrong leaf, inherits m=2 from a
# ├─ b               on the longer correct path (m=3)
# │  └─ b1           m=2
# │     ├─ b11       correct leaf (m=1)
# │     └─ b12       unfinished: pruned
# ├─ c               off path, inherits m=3 from the root (m_root = 1 + min(2, 3))
# │  └─ c1           wrong leaf, m=3
# └─ d               unfinished: pruned
GOLDEN = inner(
    "",
    inner("a", leaf("a1", True), leaf("a2", False)),
    inner("b", inner("b1", leaf("b11", True), leaf("b12", terminal=False))),
    inner("c", leaf("c1", False)),
    leaf("d", terminal=False),
)
EXPECTED = {  # steps: (value, m, on_correct_path), computed by hand from Eq. 1
    ("a",): (0.5, 2, True),
    ("a", "a1"): (1.0, 1, True),
    ("a", "a2"): (0.25, 2, False),  # max(0, 0.5 - 0.5 / 2)
    ("b",): (1 / 3, 3, True),
    ("b", "b1"): (2 / 3, 2, True),  # 1/3 + (2/3) / 2
    ("b", "b1", "b11"): (1.0, 1, True),
    ("c",): (0.0, 3, False),  # max(0, 0 - 1/3)
    ("c", "c1"): (0.0, 3, False),
}


def test_golden_tree_two_correct_paths_off_path_and_unfinished_branches():
    samples = by_path(infer_values(Tree.from_dict(GOLDEN)))
    assert set(samples) == set(EXPECTED)  # root, b12 and d give no sample
    for steps, (value, m, on_path) in EXPECTED.items():
        s = samples[steps]
        assert s.value == pytest.approx(value)
        assert (s.distance, s.on_correct_path) == (m, on_path)


def test_golden_wrong_step_below_a_valued_node():
    # A wrong step from a node with value v gets max(0, v - (1 - v) / m).
    tree = inner("", inner("s1", inner("s2", leaf("good", True), leaf("bad", False))))
    samples = by_path(infer_values(Tree.from_dict(tree)))
    v, m = samples[("s1", "s2")].value, samples[("s1", "s2")].distance
    assert (v, m) == (pytest.approx(2 / 3), 2)
    bad = samples[("s1", "s2", "bad")]
    assert bad.distance == m  # off the correct path: inherits m from its parent
    assert bad.value == pytest.approx(max(0.0, v - (1 - v) / m)) == pytest.approx(0.5)
    assert samples[("s1", "s2", "good")].value == pytest.approx(1.0)


def test_no_correct_leaf_gives_no_samples():
    assert infer_values(Tree.from_dict(inner("", inner("a", leaf("a1", False)), leaf("b", False)))) == []
    assert infer_values(Tree.from_dict(inner("", leaf("a", None)))) == []  # unchecked is not correct
    assert infer_values(Tree()) == []


def test_mark_correct_checks_every_terminal_answer_then_values_follow():
    d = inner("", leaf("x"), inner("y", leaf("z")), leaf("w", terminal=False))
    tree = Tree.from_dict(d)
    for node, answer in zip(list(tree.terminals()), ["1", None], strict=True):
        node.answer = answer
    seen = []
    mark_correct(tree, lambda a: seen.append(a) or a == "1")
    assert seen == ["1", None]
    assert [n.correct for n in tree.terminals()] == [True, False]
    assert by_path(infer_values(tree))[("x",)].value == 1.0


def test_to_dict_round_trip_and_solutions():
    tree = Tree.from_dict(GOLDEN)
    again = Tree.from_dict(tree.to_dict())
    assert again.to_dict() == tree.to_dict()
    assert set(tree.to_dict()) >= {"step", "terminal", "correct", "children", "n", "v"}
    solutions = tree.solutions()
    assert [s.steps for s in solutions] == [("a", "a1"), ("a", "a2"), ("b", "b1", "b11"), ("c", "c1")]
    assert [s.correct for s in solutions] == [True, False, True, False]


# ---- Theorem 1 and the single-path identity, as properties


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=40))
def test_single_correct_path_has_v_k_equal_k_over_K(K):
    d = leaf(f"s{K}", True)
    for k in range(K - 1, 0, -1):
        d = inner(f"s{k}", d)
    samples = infer_values(Tree.from_dict(inner("", d)))
    assert [s.distance for s in samples] == list(range(K, 0, -1))
    for k, s in enumerate(samples, start=1):
        assert s.value == pytest.approx(k / K)
    assert samples[-1].value == 1.0


def trees():
    leaves = st.one_of(
        st.builds(lambda c: leaf("", c), st.sampled_from([True, False, None])),
        st.just(leaf("", terminal=False)),
    )
    return st.recursive(leaves, lambda kids: st.lists(kids, min_size=1, max_size=4).map(
        lambda cs: inner("", *cs)), max_leaves=40)


def name_steps(d, prefix="s"):
    for i, c in enumerate(d["children"]):
        c["step"] = f"{prefix}.{i}"
        name_steps(c, c["step"])
    return d


@settings(max_examples=200, deadline=None)
@given(trees())
def test_theorem_1_values_stay_in_unit_interval(d):
    d = name_steps(inner("", d))
    tree = Tree.from_dict(d)
    samples = by_path(infer_values(tree))
    has_correct = any(n.terminal and n.correct for n in tree.nodes)
    assert bool(samples) == has_correct
    for s in samples.values():
        assert 0.0 <= s.value <= 1.0
        assert s.distance >= 1
        parent = samples.get(s.steps[:-1])
        v_parent = parent.value if parent else 0.0
        if s.on_correct_path:  # a right step moves up, a wrong one never does
            assert s.value > v_parent or v_parent == 1.0
        else:
            assert s.value <= v_parent
    for node in tree.nodes[1:]:
        if node.terminal and node.correct:
            assert samples[node.steps].value == 1.0 and samples[node.steps].distance == 1
