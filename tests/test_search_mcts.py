"""MCTS* (Algorithm 2): selection, expansion, rollout and backup on scripted models; replay; bad inputs."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from fakes import ARITH, ArithPolicy, ArithPRM, ScriptedPolicy, ScriptedPRM, arith_problem, never_ending

from restmcts.config import SearchConfig
from restmcts.search import STRATEGIES, Models, Tree, infer_values, mark_correct, mcts_star, run_strategy
from restmcts.search.calls import clip_scores
from restmcts.search.mcts import CRITIC_SUFFIX, backup, select
from restmcts.search.types import Budget


def run(coro):
    return asyncio.run(coro)


def node(step, n=0, v=0.0, children=(), terminal=False):
    return {"step": step, "terminal": terminal, "correct": None, "n": n, "v": v, "children": list(children)}


def table_prm(values: dict[tuple[str, ...], float]) -> ScriptedPRM:
    return ScriptedPRM(lambda steps: values[steps])


def table_policy(steps_for: dict[tuple[str, ...], list[str]]) -> ScriptedPolicy:
    return ScriptedPolicy(lambda steps, n, seed: steps_for.get(steps, []))


# ---- selection and backup on hand-built trees


def uct_tree(*extra):
    return Tree.from_dict(node("", 10, 0.5, [node("a", 6, 0.6), node("b", 3, 0.4), node("c", 1, 0.2), *extra]))


def test_select_follows_uct():
    # c=0.5: a 0.6+0.5*sqrt(2ln10/6)=1.038, b 0.4+0.5*sqrt(2ln10/3)=1.019, c 0.2+0.5*sqrt(2ln10)=1.273
    assert select(uct_tree(), SearchConfig(exploration=0.5)).step == "c"
    # c=0.1: a 0.688, b 0.524, c 0.415
    assert select(uct_tree(), SearchConfig(exploration=0.1)).step == "a"
    assert 0.6 + 0.5 * math.sqrt(2 * math.log(10) / 6) < 0.2 + 0.5 * math.sqrt(2 * math.log(10))


def test_select_unvisited_bonus_and_dead_ends():
    cfg = SearchConfig(exploration=0.5, u_unvisited=0.9)
    assert select(uct_tree(node("d", 0, 0.3)), cfg).step == "c"  # 0.3 + 0.9 = 1.2 < 1.273
    cfg = SearchConfig(exploration=0.5, u_unvisited=1.0)
    assert select(uct_tree(node("d", 0, 0.3)), cfg).step == "d"  # 1.3
    tree = uct_tree()
    tree.mark_dead_end(tree.nodes[3])  # c
    assert select(tree, SearchConfig(exploration=0.5)).step == "a"


def test_select_descends_to_a_leaf():
    tree = Tree.from_dict(node("", 3, 0.5, [node("a", 2, 0.9, [node("a1", 1, 0.9), node("a2", 1, 0.1)]),
                                             node("b", 1, 0.1)]))
    assert select(tree, SearchConfig(exploration=0.0)).steps == ("a", "a1")


def test_select_ties_go_to_the_trees_rng():
    picks = set()
    for seed in range(20):
        tree = Tree.from_dict(node("", 1, 0.0, [node("x", 0, 0.5), node("y", 0, 0.5)]), seed=seed)
        expected = random.Random(seed).choice([0, 1])
        picked = select(tree, SearchConfig()).step
        assert picked == "xy"[expected]
        picks.add(picked)
    assert picks == {"x", "y"}


def test_backup_visit_weighted_mean_of_visited_children():
    tree = Tree.from_dict(node("", 1, 0.3, [
        node("x", 1, 0.5, [node("y", 1, 0.8), node("z", 0, 0.1)]),
        node("w", 2, 0.2)]))
    x = tree.nodes[1]
    backup(x)
    assert (x.n, x.v) == (2, pytest.approx(0.8))  # z is unvisited: left out
    assert (tree.root.n, tree.root.v) == (2, pytest.approx((0.8 * 2 + 0.2 * 2) / 4))


# ---- one simulation by hand


def one_sim_models():
    policy = table_policy({(): ["a", "b", "a", " "], ("b",): ["b1", "b2"], ("a",): ["a1"]})
    prm = table_prm({("a",): 0.3, ("b",): 0.7, ("b", "b1"): 0.9, ("b", "b2"): 0.6, ("a", "a1"): 0.2,
                     ("a", "a1", "x"): 0.0})
    return policy, prm


CFG1 = SearchConfig(num_simulations=1, branch=4, rollout_branch=2, rollout_steps=1, alpha=0.5)


def test_one_simulation_expand_score_rollout_backup():
    policy, prm = one_sim_models()
    result = run(mcts_star("q", Models(policy, prm), ARITH, CFG1, seed=7))
    tree = result.tree
    root, a, b = tree.nodes
    assert [c.step for c in root.children] == ["a", "b"]  # duplicate and empty dropped
    assert prm.calls[0] == (("a",), ("b",))  # all new children in one score call
    assert prm.calls[1] == (("b", "b1"), ("b", "b2"))  # the rollout from the best child
    assert (a.v, a.n) == (0.3, 0)
    assert (b.v, b.n) == (pytest.approx(0.5 * 0.7 + 0.5 * 0.9), 1)  # (1-α) v + α v_max
    assert (root.n, root.v) == (1, pytest.approx(0.8))
    assert len(tree.nodes) == 3  # rollout nodes are not added
    assert [c[2] for c in policy.calls] == [4, 2]  # branch, then rollout_branch
    budget = result.budget
    assert (budget.policy_calls, budget.prm_calls, budget.simulations) == (2, 4, 1)
    assert (budget.duplicate_steps, budget.empty_steps) == (1, 1)
    assert budget.tokens == policy.tokens == 2 + 2 + 2 + 1 + 2 + 2
    assert (root.tokens, root.prm_calls, b.tokens, b.prm_calls) == (7, 2, 4, 2)


def test_second_simulation_selects_the_unvisited_child():
    policy, prm = one_sim_models()
    cfg = SearchConfig(num_simulations=2, branch=4, rollout_branch=2, rollout_steps=1, u_unvisited=0.9)
    result = run(mcts_star("q", Models(policy, prm), ARITH, cfg, seed=7))
    assert policy.calls[2][1] == ("a",)  # a: 0.3 + 0.9 beats b: 0.8 + c*sqrt(2 ln 1 / 1) = 0.8
    a1 = result.tree.nodes[3]
    assert a1.steps == ("a", "a1") and a1.n == 1


def test_rollout_stops_at_a_terminal_step():
    policy = table_policy({(): ["a"], ("a",): ["The answer is 3"], ("a", "The answer is 3"): ["never"]})
    prm = table_prm({("a",): 0.2, ("a", "The answer is 3"): 0.6})
    cfg = SearchConfig(num_simulations=1, rollout_steps=3)
    result = run(mcts_star("q", Models(policy, prm), ARITH, cfg, seed=0))
    assert len(policy.calls) == 2
    assert result.tree.nodes[1].v == pytest.approx(0.4)


# ---- whole searches on the arith fakes


def arith_search(seed=0, p=0.8, **overrides):
    problem = arith_problem(seed)
    policy, prm = ArithPolicy(p), ArithPRM()
    cfg = SearchConfig(**({"num_simulations": 20} | overrides))
    result = run(mcts_star(problem.text, Models(policy, prm), ARITH, cfg, seed=seed))
    return problem, policy, prm, result


def test_replay_from_a_seed_is_exact():
    _, policy1, _, r1 = arith_search(seed=3)
    _, policy2, _, r2 = arith_search(seed=3)
    assert r1.tree.to_dict() == r2.tree.to_dict()
    assert r1.budget == r2.budget and policy1.calls == policy2.calls
    problem = arith_problem(3)
    r3 = run(mcts_star(problem.text, Models(ArithPolicy(0.8), ArithPRM()), ARITH, SearchConfig(num_simulations=20),
                       seed=4))
    assert r3.tree.to_dict() != r1.tree.to_dict()


def test_budget_matches_what_the_models_did_and_the_per_node_accounting():
    _, policy, prm, result = arith_search(seed=1)
    b, tree = result.budget, result.tree
    assert b.tokens == policy.tokens == sum(n.tokens for n in tree.nodes)
    assert b.prm_calls == prm.prefixes == sum(n.prm_calls for n in tree.nodes)
    assert b.policy_calls == len(policy.calls)
    assert tree.root.n == b.simulations - b.dead_ends
    assert all(0.0 <= n.v <= 1.0 for n in tree.nodes)


def test_data_generation_keeps_the_whole_tree_and_yields_values():
    solved = 0
    for seed in range(6):
        problem, _, _, result = arith_search(seed=seed, num_simulations=30)
        tree = result.tree
        assert result.budget.simulations == 30 or tree.open_leaves == 0
        mark_correct(tree, lambda a, gold=str(problem.answer): ARITH.check(a, gold))
        samples = infer_values(tree)
        if any(n.correct for n in tree.terminals()):
            solved += 1
            assert samples and all(0.0 <= s.value <= 1.0 for s in samples)
            assert any(s.on_correct_path and s.value == 1.0 for s in samples)
        assert result.best is not None
    assert solved >= 5


def test_early_stop_at_end_gate_returns_the_best_terminal():
    problem, _, _, result = arith_search(seed=2, p=0.9, num_simulations=50, early_stop=True, end_gate=0.9)
    assert result.budget.simulations < 50
    assert result.best is not None and result.best.value >= 0.9
    assert result.best.answer == str(problem.answer)
    assert result.best.value == max(s.value for s in result.solutions if s.answer is not None)


def test_fully_explored_tree_ends_early():
    policy = ScriptedPolicy(lambda steps, n, seed: ["The answer is 1", "The answer is 2"])
    prm = table_prm({("The answer is 1",): 0.4, ("The answer is 2",): 0.7})
    result = run(mcts_star("q", Models(policy, prm), ARITH, SearchConfig(num_simulations=10), seed=0))
    assert result.budget.simulations == 1 and len(policy.calls) == 1
    assert result.best.answer == "2" and result.failure is None


def test_self_critic_marks_solved_nodes_terminal_never_at_depth_1():
    async def propose(question, steps, n, seed, temperature=None):
        if question.endswith(CRITIC_SUFFIX):
            return [("Yes, it is solved.", 4)]
        return [(f"s{len(steps)}.{i}", 2) for i in range(n)]

    prm = ScriptedPRM(lambda steps: 0.5)
    cfg = SearchConfig(num_simulations=6, self_critic=True, branch=2)
    tree = run(mcts_star("q", Models(propose, prm), ARITH, cfg, seed=0)).tree
    assert all(not n.terminal for n in tree.nodes if n.depth == 1)
    assert all(n.terminal for n in tree.nodes if n.depth == 2)
    assert max(n.depth for n in tree.nodes) == 2


def test_self_critic_reads_only_affirmative_replies():
    from restmcts.search.mcts import _SOLVED

    assert _SOLVED.match("Yes, it is solved.") and _SOLVED.match("solved")
    assert not _SOLVED.match("No, not solved yet") and not _SOLVED.match("The answer is 3")


def test_self_critic_with_the_arith_policy_costs_policy_calls():
    problem, policy, _, result = arith_search(seed=5, num_simulations=10, self_critic=True)
    critic_calls = [c for c in policy.calls if c[0].endswith(CRITIC_SUFFIX)]
    assert critic_calls and all(len(c[1]) >= 2 for c in critic_calls)
    assert result.budget.policy_calls == len(policy.calls)
    done = len(problem.ops)
    assert all(n.terminal for n in result.tree.nodes if n.depth == done)


# ---- bad inputs never hang or crash the tree


def test_empty_expansion_is_a_dead_end():
    policy = ScriptedPolicy(lambda steps, n, seed: ["", "   "])
    prm = ScriptedPRM(lambda steps: 0.5)
    result = run(mcts_star("q", Models(policy, prm), ARITH, SearchConfig(num_simulations=10), seed=0))
    b = result.budget
    assert (b.simulations, b.dead_ends, b.empty_steps, b.prm_calls) == (1, 1, 2, 0)
    assert result.best is None and result.failure
    assert result.tree.root.dead_end


def test_dead_ends_propagate_and_stop_the_search():
    policy = table_policy({(): ["a", "b", "a"]})  # below a and b: nothing
    prm = ScriptedPRM(lambda steps: 0.5)
    result = run(mcts_star("q", Models(policy, prm), ARITH, SearchConfig(num_simulations=10), seed=0))
    b = result.budget
    assert (b.simulations, b.dead_ends, b.duplicate_steps) == (3, 2, 1)
    assert result.tree.root.dead_end and result.tree.open_leaves == 0
    assert all(c["dead_end"] for c in result.tree.to_dict()["children"])


def test_nan_inf_and_out_of_range_scores_are_repaired_and_counted():
    steps = ["a", "b", "c", "d", "e"]
    policy = table_policy({(): steps})
    scores = {("a",): math.nan, ("b",): math.inf, ("c",): -0.5, ("d",): 1.7, ("e",): 0.5}
    cfg = SearchConfig(num_simulations=1, branch=5, rollout_steps=0)
    result = run(mcts_star("q", Models(policy, table_prm(scores)), ARITH, cfg, seed=0))
    values = {n.step: n.v for n in result.tree.nodes[1:]}
    assert values == {"a": 0.0, "b": 0.0, "c": 0.0, "d": 1.0, "e": 0.5}
    assert result.budget.bad_scores == 4
    assert result.tree.nodes[4].n == 1  # d, the best new child, counts its (empty) rollout visit


def test_wrong_length_and_non_numeric_scores():
    budget = Budget()
    assert clip_scores([], 3, budget) == [0.0, 0.0, 0.0] and budget.bad_scores == 3
    budget = Budget()
    assert clip_scores([0.2, None, "x", 0.4], 2, budget) == [0.2, 0.0] and budget.bad_scores == 3

    async def short_score(question, steps_list):
        return [0.9]

    policy = table_policy({(): ["a", "b", "c"]})
    result = run(mcts_star("q", Models(policy, short_score), ARITH, SearchConfig(num_simulations=3), seed=0))
    assert result.budget.bad_scores >= 2
    assert [n.v for n in result.tree.root.children][1:] == [0.0, 0.0]


def test_never_terminating_policy_is_bounded():
    policy, prm = ScriptedPolicy(never_ending), ScriptedPRM(lambda steps: 0.5)
    cfg = SearchConfig(num_simulations=30, max_depth=12)
    result = run(mcts_star("q", Models(policy, prm), ARITH, cfg, seed=0))
    assert result.budget.simulations == 30
    assert result.best is None and "no terminal node" in result.failure
    small = SearchConfig(num_simulations=40, max_depth=3, branch=2, rollout_steps=2)
    result = run(mcts_star("q", Models(ScriptedPolicy(never_ending), prm), ARITH, small, seed=0))
    tree = result.tree
    assert max(n.depth for n in tree.nodes) == 3
    assert all(n.terminal and n.answer is None for n in tree.nodes if n.depth == 3)
    assert result.best is None and result.failure
    assert result.budget.simulations <= 40


# ---- registry


def test_registry_names_and_unknown_strategy():
    assert set(STRATEGIES) == {"mcts_star", "cot", "sc", "bon", "tot"}
    with pytest.raises(ValueError, match="mcts_star, cot, sc, bon, tot"):
        run(run_strategy("beam", "q", Models(ArithPolicy(), ArithPRM()), ARITH, SearchConfig(), 0))
    problem = arith_problem(0)
    result = run(run_strategy("mcts_star", problem.text, Models(ArithPolicy(), ArithPRM()), ARITH,
                              SearchConfig(num_simulations=5), 0))
    assert result.strategy == "mcts_star" and result.tree is not None


# ---- the authors' evaluation: gate on the selected leaf, fallback answer, finished nodes


def test_self_critic_solved_node_gets_its_answer_and_value_targets():
    # The critic calls the solution solved once every operation is applied, before any answer step:
    # the node must answer (read by a greedy completion), be judged, and lead value inference to r = +1.
    problem, _, _, result = arith_search(seed=5, p=1.0, num_simulations=12, self_critic=True)
    done = len(problem.ops)
    critic_ended = [n for n in result.tree.nodes if n.depth == done and n.terminal]
    assert critic_ended and all(n.answer == str(problem.answer) and n.finish for n in critic_ended)
    assert all(n.finish[-1] == f"The answer is {problem.answer}" for n in critic_ended)
    assert result.budget.finished == len(critic_ended)
    mark_correct(result.tree, lambda a: a == str(problem.answer))
    samples = {s.steps: s for s in infer_values(result.tree)}
    assert all(samples[n.steps].on_correct_path and samples[n.steps].value == 1.0 for n in critic_ended)
    assert any(tuple(s.steps) == n.steps + n.finish for s in result.solutions for n in critic_ended)


def test_fallback_answers_with_the_best_node_finished_greedily():
    # Two simulations cannot reach the answer of a 3-operation question: without the fallback the
    # question scores nothing; with it the highest-value node is completed greedily.
    problem = arith_problem(7)
    for fallback in (False, True):
        policy, prm = ArithPolicy(1.0), ArithPRM(noise=0.0)
        cfg = SearchConfig(num_simulations=2, rollout_steps=0, fallback_answer=fallback)
        result = run(mcts_star(problem.text, Models(policy, prm), ARITH, cfg, seed=0))
        assert not any(n.answer for n in result.tree.terminals())
        if not fallback:
            assert result.best is None and result.budget.finished == 0
            continue
        deepest = max(result.tree.nodes[1:], key=lambda n: (n.v, n.depth))
        assert result.best.answer == str(problem.answer) and result.budget.finished == 1
        assert result.best.steps[:deepest.depth] == deepest.steps and len(result.best.steps) == len(problem.ops) + 1
        assert result.budget.tokens == policy.tokens  # the completion is paid for
        assert sum(n.tokens for n in result.tree.nodes) == policy.tokens
        assert result.best in result.solutions


def test_gate_stops_at_a_selected_leaf_rated_above_it():
    # A PRM that rates the first step 0.95: the authors' gate stops when selection reaches it.
    policy = ScriptedPolicy(lambda steps, n, seed: [f"x{len(steps)}.{i}" if len(steps) < 3 else "The answer is 4"
                                                    for i in range(n)])
    prm = ScriptedPRM(lambda steps: 0.95 if steps == ("x0.0",) else 0.2)
    cfg = SearchConfig(num_simulations=20, early_stop=True, end_gate=0.9, rollout_steps=0, branch=2,
                       u_unvisited=0.0, fallback_answer=True)
    result = run(mcts_star("q", Models(policy, prm), ARITH, cfg, seed=0))
    assert result.budget.simulations == 2  # expand the root, then select x0.0 and stop
    assert result.best.steps[0] == "x0.0" and result.best.answer == "4"
    assert result.budget.finished == 1


def test_eos_ends_only_the_branch_it_ended():
    # The same step text ends the message after one prefix and not after another.
    from restmcts.tasks import MessageEnds

    ended = {("a", "so it is 3")}
    answers = MessageEnds(ARITH, ended)
    assert answers.ends(("a", "so it is 3")) and not answers.ends(("b", "so it is 3"))


# ---- rollout steps kept as nodes, duplicates accounted


def test_kept_rollouts_become_nodes_and_reach_answers():
    problem = arith_problem(4)
    results = {}
    for keep in (False, True):
        policy, prm = ArithPolicy(1.0), ArithPRM(noise=0.0)
        cfg = SearchConfig(num_simulations=1, rollout_steps=8, branch=3, keep_rollouts=keep)
        results[keep] = run(mcts_star(problem.text, Models(policy, prm), ARITH, cfg, seed=0))
    assert results[False].best is None and len(results[False].tree.nodes) == 2  # root + 1 distinct step
    kept = results[True].tree
    assert results[True].best.answer == str(problem.answer)  # the rollout's answer stayed in the tree
    assert len(kept.nodes) == len(problem.ops) + 2 and all(not n.expanded for n in kept.nodes[2:])
    assert results[True].budget.tokens == results[False].budget.tokens


def test_expanding_a_node_with_kept_steps_asks_only_for_the_rest():
    problem = arith_problem(4)
    policy, prm = ArithPolicy(0.5), ArithPRM()
    cfg = SearchConfig(num_simulations=6, rollout_steps=2, branch=3, keep_rollouts=True)
    result = run(mcts_star(problem.text, Models(policy, prm), ARITH, cfg, seed=1))
    asked = {steps: n for _, steps, n, _, _ in policy.calls}
    expanded = [n for n in result.tree.nodes if n.expanded and not n.dead_end and n.depth >= 1]
    assert expanded and any(asked.get(n.steps) == 3 - 1 for n in expanded)
    assert all(len(n.children) <= 3 for n in result.tree.nodes)
    assert sum(n.tokens for n in result.tree.nodes) == policy.tokens


def test_duplicate_samples_are_paid_for_and_counted_as_wasted():
    policy = ScriptedPolicy(lambda steps, n, seed: ["same step"] * n if not steps else ["The answer is 1"] * n)
    prm = ScriptedPRM(lambda steps: 0.5)
    result = run(mcts_star("q", Models(policy, prm), ARITH, SearchConfig(num_simulations=1, branch=3), seed=0))
    assert result.budget.duplicate_steps == 2
    assert result.budget.wasted_tokens == 2 * 3 and result.budget.tokens == policy.tokens


# ---- anytime: checkpoints at simulation counts (search.record_at)


def _stopped_at(problem, cfg, k, seed):
    """The same search run with k simulations and no checkpoints."""
    plain = SearchConfig(**{**cfg.__dict__, "num_simulations": k, "record_at": ()})
    return run(mcts_star(problem.text, Models(ArithPolicy(0.8), ArithPRM(noise=0.0)), ARITH, plain, seed=seed))


@pytest.mark.parametrize("early_stop", [False, True])
def test_checkpoints_are_the_searches_stopped_at_each_count(early_stop):
    # The authors' evaluation settings (fallback answer, 2 rollout steps); with early_stop the gate may
    # end a tree before some counts: those checkpoints are its gated answer at the gate's spend.
    record_at = (1, 2, 3, 5, 8, 13, 20)
    cfg = SearchConfig(num_simulations=20, record_at=record_at, fallback_answer=True, rollout_steps=2,
                       keep_rollouts=True, exploration=0.4, u_unvisited=0.8, early_stop=early_stop, end_gate=0.9)
    completed = answered = gated = 0
    for seed in range(4):
        problem = arith_problem(seed, num_ops=4)
        policy = ArithPolicy(0.8)
        result = run(mcts_star(problem.text, Models(policy, ArithPRM(noise=0.0)), ARITH, cfg, seed=seed))
        plain = _stopped_at(problem, cfg, 20, seed)
        assert result.tree.to_dict() == plain.tree.to_dict() and result.budget == plain.budget
        assert result.tree.rng.getstate() == plain.tree.rng.getstate()  # no draw from the tree's RNG
        assert result.best == plain.best and result.solutions == plain.solutions and not plain.checkpoints
        assert [c.at for c in result.checkpoints] == list(record_at)
        for c in result.checkpoints:
            alone = _stopped_at(problem, cfg, c.at, seed)
            assert c.best == alone.best, (seed, c.at)
            assert (c.simulations, c.tokens, c.prm_calls) == (alone.budget.simulations, alone.budget.tokens,
                                                               alone.budget.prm_calls), (seed, c.at)
            if c.gated:  # the gate ended the tree by then: its answer, at what the tree had spent
                assert early_stop and c.best.value >= 0.9 and c.simulations == result.budget.simulations
            completed += c.finish_tokens > 0
            answered += c.best is not None
            gated += c.gated
        spent = [c.tokens - c.finish_tokens for c in result.checkpoints]
        assert spent == sorted(spent) and result.checkpoints[-1].tokens == result.budget.tokens
    assert completed and answered  # some checkpoints needed the greedy completion, some found answers
    assert bool(gated) == early_stop


def test_the_gate_ends_an_anytime_tree_and_answers_every_later_checkpoint():
    policy = ScriptedPolicy(lambda steps, n, seed: [f"x{len(steps)}.{i}" if len(steps) < 3 else "The answer is 4"
                                                    for i in range(n)])
    prm = ScriptedPRM(lambda steps: 0.95 if steps == ("x0.0",) else 0.2)
    cfg = SearchConfig(num_simulations=20, early_stop=True, end_gate=0.9, rollout_steps=0, branch=2,
                       u_unvisited=0.0, fallback_answer=True, record_at=(1, 2, 5, 20))
    result = run(mcts_star("q", Models(policy, prm), ARITH, cfg, seed=0))
    assert result.budget.simulations == 2  # the gate fired at the second simulation: the tree stops there
    first, *later = result.checkpoints
    assert (first.at, first.simulations, first.gated) == (1, 1, False)
    assert first.best.steps[0] == "x0.0" and first.finish_tokens > 0  # the fallback's node, completed
    assert first.tokens == 2 * 2 + first.finish_tokens  # the root's expansion (2 steps of 2 tokens), the completion
    assert [c.at for c in later] == [2, 5, 20]
    for c in later:
        assert (c.simulations, c.tokens, c.gated, c.best) == (2, result.budget.tokens, True, result.best)
    assert result.budget.tokens == 2 * 2 + first.finish_tokens  # the gate's node: the same completion
    assert len(policy.calls) == 1 + 3  # the expansion, and that completion's 3 steps, run once for both


def test_record_at_must_lie_within_the_simulations():
    from restmcts.config import ConfigError

    with pytest.raises(ConfigError, match=r"search\.record_at: every count must be in \[1, search\.num_simulations=8\]"):
        SearchConfig(num_simulations=8, record_at=(4, 16))
    with pytest.raises(ConfigError, match=r"search\.record_at"):
        SearchConfig(num_simulations=8, record_at=(0,))
