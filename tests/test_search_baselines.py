"""Baselines (CoT, self-consistency, best-of-N, ToT) on scripted and arith fakes."""

from __future__ import annotations

import asyncio

import pytest
from fakes import ARITH, ArithPolicy, ArithPRM, ScriptedPolicy, ScriptedPRM, arith_problem, never_ending

from restmcts.config import SearchConfig
from restmcts.search import (
    STRATEGIES,
    Models,
    best_of_n,
    cot,
    run_strategy,
    self_consistency,
    tot,
)
from restmcts.search.mcts import CRITIC_SUFFIX


def run(coro):
    return asyncio.run(coro)


def first_steps(*firsts: str, then: dict[str, str] | None = None) -> ScriptedPolicy:
    """Chain i starts with firsts[i] (in the order chains start); then[first] follows it."""
    queue = list(firsts)
    then = then or {}

    def script(steps, n, seed):
        if not steps:
            return [queue.pop(0)]
        return [then.get(steps[-1], f"The answer is {steps[-1]}")]

    return ScriptedPolicy(script)


def test_cot_is_one_greedy_chain():
    problem = arith_problem(1, num_ops=4)
    policy, prm = ArithPolicy(p=0.6), ArithPRM()
    result = run(cot(problem.text, Models(policy, prm), ARITH, SearchConfig(), seed=0))
    assert result.best.answer == str(problem.answer)
    assert result.best.steps == tuple(problem.solution())
    assert [(c[2], c[4]) for c in policy.calls] == [(1, 0.0)] * 5  # five calls, each n=1 at temperature 0
    assert (result.budget.policy_calls, result.budget.prm_calls) == (5, 0)
    assert result.solutions == [result.best]


def test_self_consistency_majority_vote():
    policy = first_steps("The answer is 5", "The answer is 7", "The answer is 5", "The answer is 9")
    result = run(self_consistency("q", Models(policy, ScriptedPRM(lambda s: 0.0)), ARITH,
                                  SearchConfig(num_samples=4), seed=0))
    assert result.best.answer == "5"
    assert sorted(s.answer for s in result.solutions) == ["5", "5", "7", "9"]
    assert result.budget.prm_calls == 0 and result.budget.policy_calls == 4
    tie = first_steps("The answer is 7", "The answer is 5", "The answer is 5", "The answer is 7")
    result = run(self_consistency("q", Models(tie, ScriptedPRM(lambda s: 0.0)), ARITH,
                                  SearchConfig(num_samples=4), seed=0))
    assert result.best.answer == "7"  # ties: the answer seen first


BON_VALUES = {("a1",): 0.9, ("a1", "The answer is 1"): 0.2,
              ("b1",): 0.3, ("b1", "The answer is 2"): 0.8,
              ("c1",): 0.6, ("c1", "The answer is 3"): 0.7}


@pytest.mark.parametrize("aggregate, answer, prefixes", [("min", "3", 6), ("last", "2", 3)])
def test_best_of_n_picks_by_prm_min_or_last(aggregate, answer, prefixes):
    policy = first_steps("a1", "b1", "c1", then={"a1": "The answer is 1", "b1": "The answer is 2",
                                                 "c1": "The answer is 3"})
    prm = ScriptedPRM(lambda steps: BON_VALUES[steps])
    cfg = SearchConfig(num_samples=3, bon_aggregate=aggregate)
    result = run(best_of_n("q", Models(policy, prm), ARITH, cfg, seed=0))
    assert result.best.answer == answer
    assert result.budget.prm_calls == prm.prefixes == prefixes
    assert result.best.value == max(s.value for s in result.solutions)


def test_best_of_n_scores_each_shared_prefix_once():
    # four chains, two distinct: 4 distinct prefixes of the 8 the chains are valued by
    policy = first_steps("a1", "a1", "b1", "a1", then={"a1": "The answer is 1", "b1": "The answer is 2"})
    values = {("a1",): 0.9, ("a1", "The answer is 1"): 0.4, ("b1",): 0.3, ("b1", "The answer is 2"): 0.8}
    prm = ScriptedPRM(lambda steps: values[steps])
    result = run(best_of_n("q", Models(policy, prm), ARITH, SearchConfig(num_samples=4), seed=0))
    sent = [p for call in prm.calls for p in call]
    assert sorted(sent) == sorted(values)
    assert (result.budget.prm_calls, result.budget.reused_scores) == (4, 4)
    assert [s.value for s in result.solutions] == [0.4, 0.4, 0.3, 0.4]  # min over prefixes, as if scored alone
    assert result.best.answer == "1"


def test_concurrent_score_calls_send_a_shared_prefix_once():
    from restmcts.search.calls import Calls

    async def score_twice():
        calls = Calls(Models(ScriptedPolicy(never_ending), prm), "q")
        both = await asyncio.gather(calls.score([("x",), ("x", "y")]), calls.score([("x",), ("z",), ("z",)]))
        return both, calls.budget

    prm = ScriptedPRM(lambda steps: len(steps) / 10)
    (first, second), budget = run(score_twice())
    assert (first, second) == ([0.1, 0.2], [0.1, 0.1, 0.1])
    assert sorted(p for call in prm.calls for p in call) == [("x",), ("x", "y"), ("z",)]
    assert (budget.prm_calls, budget.reused_scores) == (3, 2)


def test_tot_keeps_the_top_k_by_prm_value():
    values = {("a",): 0.2, ("b",): 0.9, ("c",): 0.5, ("d",): 0.1,
              ("b", "The answer is 1"): 0.7, ("c", "The answer is 2"): 0.8}
    policy = ScriptedPolicy(lambda steps, n, seed: ["a", "b", "c", "d"] if not steps else
                            [f"The answer is {'12'['bc'.index(steps[-1])]}"])
    prm = ScriptedPRM(lambda steps: values[steps])
    cfg = SearchConfig(branch=4, beam_width=2)
    result = run(tot("q", Models(policy, prm), ARITH, cfg, seed=0))
    assert [c[1] for c in policy.calls] == [(), ("b",), ("c",)]  # only the kept two expand
    assert len(prm.calls) == 2  # one score call per depth
    assert result.best.answer == "2" and result.best.value == 0.8
    assert {s.answer for s in result.solutions} == {"1", "2"}


def test_tot_on_arith_finds_the_answer_one_score_call_per_depth():
    problem = arith_problem(4, num_ops=3)
    policy, prm = ArithPolicy(p=0.6), ArithPRM()
    result = run(tot(problem.text, Models(policy, prm), ARITH, SearchConfig(beam_width=3), seed=0))
    assert result.best.answer == str(problem.answer)
    assert len(prm.calls) == len(problem.ops) + 1
    assert len(result.solutions) <= 3


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_fills_the_budget_the_same_way(name):
    problem = arith_problem(2)
    policy, prm = ArithPolicy(p=0.8), ArithPRM()
    cfg = SearchConfig(num_simulations=10, num_samples=4)
    result = run(run_strategy(name, problem.text, Models(policy, prm), ARITH, cfg, seed=1))
    b = result.budget
    assert result.strategy == name
    assert b.tokens == policy.tokens > 0
    assert b.policy_calls == len(policy.calls)
    assert b.prm_calls == prm.prefixes
    assert result.best is not None and result.best.answer is not None
    again = run(run_strategy(name, problem.text, Models(ArithPolicy(p=0.8), ArithPRM()), ARITH, cfg, seed=1))
    assert again.solutions == result.solutions  # same seed, same result


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_never_terminating_policy_is_bounded_by_max_depth(name):
    cfg = SearchConfig(max_depth=5, num_simulations=8, num_samples=3, branch=2)
    policy = ScriptedPolicy(never_ending)
    result = run(run_strategy(name, "q", Models(policy, ScriptedPRM(lambda s: 0.5)), ARITH, cfg, seed=0))
    assert result.best is None and result.failure
    assert all(len(s.steps) == 5 and s.answer is None for s in result.solutions)
    assert result.solutions or name == "mcts_star"  # 8 simulations may not reach depth 5
    deepest = max(len(c[1]) for c in policy.calls if not c[0].endswith(CRITIC_SUFFIX))
    assert deepest <= 4, "the policy is never asked for a step past search.max_depth"


def test_empty_step_cuts_a_chain_short_and_counts_a_dead_end():
    policy = ScriptedPolicy(lambda steps, n, seed: ["step"] if not steps else [""])
    result = run(self_consistency("q", Models(policy, ScriptedPRM(lambda s: 0.5)), ARITH,
                                  SearchConfig(num_samples=3), seed=0))
    assert result.solutions == [] and result.best is None
    assert (result.budget.dead_ends, result.budget.empty_steps) == (3, 3)
