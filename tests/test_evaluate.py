"""jobs/evaluate.py: the equal-budget grid with intervals and paired tests, difficulty splits,
subsampled sampling baselines, self-training runs side by side, PRM quality, the report."""

from __future__ import annotations

import asyncio
import csv
import json
import random
from pathlib import Path

import pytest
from fakes import ARITH, ArithPolicy, ArithPRM, arith_problem

from restmcts import replay
from restmcts.config import ConfigError, DataConfig, SearchConfig, evaluation_search, load_config
from restmcts.evaluation.grid import (
    GridPoint,
    Measured,
    budget_points,
    pass_search_config,
    passes,
    search_config,
)
from restmcts.evaluation.prm_quality import (
    _auroc,
    _depth_auroc,
    _pick_accuracy,
    _pick_scores,
)
from restmcts.evaluation.report import claims, matched_pairs, verdict
from restmcts.evaluation.runs import IterationPoint, RunCurve, false_positive_rate, read_run
from restmcts.evaluation.sampling import subsample_prm_calls, subsample_scores, weighted_vote
from restmcts.evaluation.stats import bootstrap_ci, mcnemar_exact, paired_bootstrap, paired_bootstrap_strata
from restmcts.replay import Trace
from restmcts.search import Models
from restmcts.search.baselines import highest_value, majority
from restmcts.search.montecarlo import monte_carlo_labels
from restmcts.search.types import Solution
from restmcts.tasks.arith import ArithTask, parse_question, step_labels

ROOT = Path(__file__).resolve().parents[1]


def _trace(qid: str, answer: str | None, correct: bool, steps: tuple[str, ...] = ("s",), question: str = "q",
           value: float | None = None) -> Trace:
    return Trace(qid, question, steps, answer, correct, 10, "sc", 0, value=value)


def _measured(strategy: str, budget: int, tokens: float, scores: list[float], models: str = "bootstrap",
              difficulty: str = "4") -> Measured:
    acc = sum(scores) / len(scores)
    return Measured(GridPoint(strategy, budget, acc, tokens, 0, len(scores), None, acc, acc, models, difficulty),
                    tuple(scores))


# --------------------------------------------------------------------------- statistics


def test_bootstrap_ci_covers_the_true_rate_about_95_percent_and_is_seeded():
    rng = random.Random(0)
    true_rate, covered, trials = 0.3, 0, 200
    for _ in range(trials):
        scores = [1.0 if rng.random() < true_rate else 0.0 for _ in range(200)]
        low, high = bootstrap_ci(scores, resamples=1000)
        covered += low <= true_rate <= high
    assert 0.90 <= covered / trials <= 0.99, covered
    scores = [1.0] * 30 + [0.0] * 70
    assert bootstrap_ci(scores, seed=3) == bootstrap_ci(scores, seed=3)
    low, high = bootstrap_ci(scores)
    assert low < 0.3 < high and high - low == pytest.approx(2 * 1.96 * (0.3 * 0.7 / 100) ** 0.5, abs=0.03)


def test_mcnemar_exact_p_on_a_hand_computed_case():
    # 8 questions only a gets right, 2 only b, 5 both, 5 neither: p = 2 * P(Binomial(10, 1/2) <= 2)
    a = [1] * 8 + [0] * 2 + [1] * 5 + [0] * 5
    b = [0] * 8 + [1] * 2 + [1] * 5 + [0] * 5
    assert mcnemar_exact(a, b) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar_exact(b, a) == mcnemar_exact(a, b)
    assert mcnemar_exact([1, 0], [1, 0]) == 1.0  # no discordant pair
    assert paired_bootstrap(a, b).mcnemar_p == pytest.approx(0.109375)
    assert paired_bootstrap([0.5, 1.0], [0.0, 1.0]).mcnemar_p is None  # fractions: no McNemar


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = random.Random(1)
    n = 400
    b = [1.0 if rng.random() < 0.5 else 0.0 for _ in range(n)]
    better = [1.0 if x or rng.random() < 0.3 else 0.0 for x in b]  # right wherever b is, and 30% more
    t = paired_bootstrap(better, b)
    assert t.diff > 0.1 and t.p_value < 0.01 and t.ci_low > 0 and t.n == n
    same = [1.0 if rng.random() < 0.5 else 0.0 for _ in range(n)]  # the same rate, drawn independently
    t = paired_bootstrap(same, b)
    assert t.p_value > 0.05 and t.ci_low < 0 < t.ci_high
    assert paired_bootstrap(b, b).p_value == 1.0
    # strata (seeds): the mean of the per-stratum differences
    s = paired_bootstrap_strata([([1.0, 1.0], [0.0, 0.0]), ([1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0])])
    assert s.diff == pytest.approx(0.5) and s.n == 6
    with pytest.raises(ValueError, match="same questions"):
        paired_bootstrap([1.0], [1.0, 0.0])


# --------------------------------------------------------------------------- grid, sampling, difficulty


def test_each_strategy_gets_its_own_budget_knob_and_sampling_shares_one_pass():
    cfg = load_config(None, ["eval.sample_budgets=[2,4]", "eval.max_samples=8", "eval.beam_budgets=[3]",
                             "eval.simulation_budgets=[8]"])
    assert budget_points(cfg.eval) == [("cot", 1), ("sc", 2), ("sc", 4), ("bon", 2), ("bon", 4), ("sc_prm", 2),
                                       ("sc_prm", 4), ("tot", 3), ("mcts_star", 8)]
    assert passes(cfg.eval) == [("cot", 1), ("samples", 8), ("tot", 3), ("mcts_star", 8)]
    assert passes(cfg.eval, ("cot", "mcts_star")) == [("cot", 1), ("mcts_star", 8)]
    base = evaluation_search(cfg)
    assert search_config(base, "sc", 4).num_samples == 4
    assert search_config(base, "bon", 2).num_samples == 2
    assert search_config(base, "tot", 3).beam_width == 3
    mcts = search_config(base, "mcts_star", 8)
    assert (mcts.strategy, mcts.num_simulations, mcts.early_stop) == ("mcts_star", 8, cfg.eval_search.early_stop)


def test_mcts_star_is_one_anytime_pass_at_its_largest_budget():
    cfg = load_config(None, ["eval.strategies=[cot,mcts_star]", "eval.simulation_budgets=[8,2,4]"])
    assert budget_points(cfg.eval) == [("cot", 1), ("mcts_star", 8), ("mcts_star", 2), ("mcts_star", 4)]
    assert passes(cfg.eval) == [("cot", 1), ("mcts_star", 8)]
    anytime = pass_search_config(cfg, "mcts_star", 8)
    assert (anytime.strategy, anytime.num_simulations, anytime.record_at) == ("mcts_star", 8, (2, 4, 8))
    assert pass_search_config(cfg, "cot", 1).record_at == ()


def test_mcts_star_rows_come_from_the_checkpoints_of_one_pass(ray_local, tiny_ckpt, tmp_path):
    """Real servers and workers: one MCTS* pass at 4 simulations gives the rows at 1, 2 and 4, each
    from its checkpoints (judged per question, for the paired tests); the last is the pass's own search."""
    from restmcts.actors.servers import start_servers
    from restmcts.evaluation.grid import run_grid

    cfg = load_config(ROOT / "configs/arith-tiny.yaml", [
        f"model.policy={tiny_ckpt}/policy", f"model.prm={tiny_ckpt}/prm", "data.arith_min_ops=1",
        "data.arith_max_ops=2", "data.arith_test_ops=2", "search.max_depth=3", "search.max_step_tokens=8",
        "search.num_workers=1", "search.trees_per_worker=8", "eval.strategies=[mcts_star]",
        "eval.simulation_budgets=[1,2,4]", "eval.resamples=50"])
    task = ArithTask(cfg.data, seed=cfg.loop.seed)
    questions = task.questions("test", 5)
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm)
    try:
        points = run_grid(cfg, servers, questions, str(tmp_path))
    finally:
        servers.shutdown()
    d = tmp_path / "grid" / "bootstrap" / "test"
    assert sorted(p.name for p in d.iterdir() if p.name.startswith("mcts")) == [
        "mcts_star-4.checkpoints.jsonl", "mcts_star-4.json", "mcts_star-4.parquet"]  # one pass
    rows = [json.loads(line) for line in (d / "mcts_star-4.checkpoints.jsonl").read_text().splitlines()]
    assert [(r["question_id"], r["at"]) for r in rows] == [(q.id, k) for q in questions for k in (1, 2, 4)]
    gold = {q.id: q.answer for q in questions}
    for r in rows:
        assert r["best"] is None or r["best"]["correct"] == task.check(r["best"]["answer"], gold[r["question_id"]])
    assert [(m.point.strategy, m.point.budget) for m in points] == [("mcts_star", 1), ("mcts_star", 2), ("mcts_star", 4)]
    for m in points:
        at = [r for r in rows if r["at"] == m.point.budget]
        assert m.scores == tuple(1.0 if r["best"] is not None and r["best"]["correct"] else 0.0 for r in at)
        assert m.point.avg_tokens == pytest.approx(sum(r["tokens"] for r in at) / len(at))
        assert m.point.n_questions == len(questions)
    summary = json.loads((d / "mcts_star-4.json").read_text())
    assert points[-1].point.avg_tokens == pytest.approx(summary["avg_tokens"])
    assert points[-1].point.accuracy == pytest.approx(summary["accuracy"])
    assert points[0].point.avg_tokens < points[-1].point.avg_tokens


def test_eval_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"eval\.strategies: unknown strategy 'mcts'"):
        load_config(None, ["eval.strategies=[cot,mcts]"])
    with pytest.raises(ConfigError, match=r"eval\.sample_budgets"):
        load_config(None, ["eval.sample_budgets=[0]"])
    with pytest.raises(ConfigError, match=r"eval\.sample_budgets: every budget must be <= eval\.max_samples"):
        load_config(None, ["eval.sample_budgets=[4,128]", "eval.max_samples=64"])
    with pytest.raises(ConfigError, match=r"eval\.difficulties"):
        load_config(None, ["eval.difficulties=[0]"])
    with pytest.raises(ConfigError, match="Did you mean 'prm_rollouts'"):
        load_config(None, ["eval.prm_rolouts=2"])


def test_subsampled_votes_equal_a_direct_vote_over_the_first_n_chains():
    rng = random.Random(2)
    traces, gold = [], {}
    for q in range(30):
        qid = f"q{q}"
        gold[qid] = str(rng.randint(0, 3))
        for _ in range(rng.randint(6, 8)):  # some chains ended without a row (dead ends)
            answer = None if rng.random() < 0.15 else str(rng.randint(0, 3))
            traces.append(_trace(qid, answer, answer == gold[qid], value=round(rng.random(), 3)))
    ids = list(gold) + ["never-answered"]
    rows = {qid: [t for t in traces if t.question_id == qid] for qid in ids}
    for n in (1, 2, 3, 5, 8):
        sc = subsample_scores(traces, ids, "sc", n)
        bon = subsample_scores(traces, ids, "bon", n)
        weighted = subsample_scores(traces, ids, "sc_prm", n)
        for qid, got_sc, got_bon, got_w in zip(ids, sc, bon, weighted, strict=True):
            answered = [t for t in rows[qid][:n] if t.answer is not None]
            if not answered:
                assert got_sc == got_bon == got_w == 0.0
                continue
            vote = majority([Solution(t.steps, t.answer) for t in answered])  # the search's own vote
            assert got_sc == float(vote.answer == gold[qid])
            assert got_bon == float(highest_value([(t, t.value) for t in answered]).correct)
            assert got_w == float(weighted_vote([(t, t.value) for t in answered]).correct)
    assert subsample_scores(traces, ids, "sc", 8) != subsample_scores(traces, ids, "sc", 1)


def test_subsampled_prm_calls_count_the_distinct_prefixes_of_the_first_n_answered_chains():
    traces = [_trace("q1", "1", True, ("a", "b")), _trace("q1", "1", True, ("a", "b")),
              _trace("q1", None, False, ("c", "d")), _trace("q1", "2", False, ("a", "e")),
              _trace("q2", "3", True, ("f",))]
    ids = ["q1", "q2", "unanswered"]
    # q1: n=1 {a, ab}; n=2 the same chain again; n=3 an unanswered chain (never scored); n=4 adds ae
    assert [subsample_prm_calls(traces, ids, n) for n in (1, 2, 3, 4)] == [3 / 3, 3 / 3, 3 / 3, 4 / 3]
    assert [subsample_prm_calls(traces, ids, n, "last") for n in (1, 4)] == [2 / 3, 3 / 3]


def test_harder_held_out_questions_have_more_ops_and_never_repeat_a_train_question():
    cfg = DataConfig(arith_min_ops=4, arith_max_ops=4, arith_test_ops=4, arith_test_size=50, arith_train_size=400)
    task = ArithTask(cfg, seed=0)
    train = {p.text for p in task.problems("train")}
    test = task.questions("test")
    hard = task.held_out(6, 120)
    assert len({q.question for q in hard}) == 120
    assert all(len(parse_question(q.question).ops) == 6 for q in hard)
    assert not {q.question for q in hard} & (train | {q.question for q in test})
    same = task.held_out(4, 80)  # the loop's difficulty: the test split first, then fresh questions
    assert [q.id for q in same[:50]] == [q.id for q in test] and len({q.id for q in same}) == 80
    assert all(len(parse_question(q.question).ops) == 4 for q in same)
    assert not {q.question for q in same[50:]} & (train | {q.question for q in test})
    # a space of 40 questions, 35 of them train or test: most fresh draws collide and must be skipped
    small = DataConfig(arith_min_ops=2, arith_max_ops=2, arith_test_ops=2, arith_test_size=10, arith_train_size=25,
                       arith_operand_max=2, arith_start_max=2, arith_value_max=20)
    tiny = ArithTask(small, seed=0)
    seen = {p.text for p in tiny.problems("train")} | {p.text for p in tiny.problems("test")}
    extra = tiny.held_out(2, 15)[10:]
    assert len({q.question for q in extra}) == 5 and not {q.question for q in extra} & seen
    assert ArithTask(small, seed=0).problems("train") == tiny.problems("train")  # the splits stay as they were
    with pytest.raises(ValueError, match="eval.num_test"):
        tiny.held_out(2, 500)


def test_difficulty_splits_skip_the_bootstrap_questions():
    from restmcts.evaluation.driver import _bootstrap_texts, heldout_splits

    cfg = load_config(ROOT / "configs/arith-tiny.yaml", ["eval.difficulties=[2,6]", "eval.num_test=60"])
    task = ArithTask(cfg.data, seed=cfg.loop.seed)
    (easy_label, easy), (hard_label, hard) = heldout_splits(cfg, task)
    assert (easy_label, hard_label) == ("2", "6") and len(easy) == len(hard) == 60
    assert not {q.question for q in easy} & _bootstrap_texts(cfg) and _bootstrap_texts(cfg)
    assert all(len(parse_question(q.question).ops) == 6 for q in hard)
    gsm = load_config(None, ["data.task=gsm8k", "eval.difficulties=[4]"])
    with pytest.raises(ConfigError, match="eval.difficulties"):
        heldout_splits(gsm, object())


# --------------------------------------------------------------------------- claims


def test_claims_pair_the_closest_budget_and_decide_by_a_paired_test():
    win = [1.0] * 80 + [0.0] * 20
    lose = [1.0] * 40 + [0.0] * 60
    level = [1.0] * 41 + [0.0] * 59
    grid = [_measured("cot", 1, 50, lose), _measured("sc", 2, 100, level), _measured("sc", 8, 400, lose),
            _measured("bon", 8, 400, level), _measured("mcts_star", 4, 250, win),
            _measured("mcts_star", 4, 250, lose, difficulty="6"), _measured("sc", 8, 390, win, difficulty="6")]
    pairs = matched_pairs(grid[:5], "mcts_star", "sc")
    assert [(p.a.avg_tokens, p.b.avg_tokens) for p in pairs] == [(250, 400)]  # log-closest: 400, not 100
    checked, pairings = claims(grid, [], None)
    by = {c.text: c for c in checked}
    sc4 = by["MCTS* above Self-Consistency at matched tokens (bootstrap models, 4 ops)"]
    assert sc4.holds is True and "0.800 vs 0.400" in sc4.evidence and "p = < 0.001" in sc4.evidence
    assert "250 tok" in sc4.evidence and "400 tok" in sc4.evidence  # both token figures
    sc6 = by["MCTS* above Self-Consistency at matched tokens (bootstrap models, 6 ops)"]
    assert sc6.holds is False and sc6.below and "below at 1" in sc6.evidence
    assert by["MCTS* above PRM Best-of-N at matched tokens (bootstrap models, 4 ops)"].holds is True
    assert "MCTS* above PRM Best-of-N at matched tokens (bootstrap models, 6 ops)" not in by  # no bon at 6 ops
    assert len(checked) == 3 + 3
    assert len(pairings) == 3
    assert not sc4.below and not by["MCTS* above PRM Best-of-N at matched tokens (bootstrap models, 4 ops)"].below
    assert verdict([paired_bootstrap(level, lose)]) is False  # one question apart: not significant
    assert verdict([]) is None
    rest = checked[-3]
    assert rest.holds is None and "lacks a rest_mcts or a rest_em run" in rest.evidence
    assert [c.holds for c in checked[-2:]] == [None, None]  # no PRM-quality run


def _run(algo: str, seed: int, final: list[float]) -> RunCurve:
    acc = sum(final) / len(final)
    return RunCurve(f"runs/{algo}-{seed}", algo, (IterationPoint(0, 0.3, None, 0, 0, None, scores=(0.0,) * len(final)),
                                                  IterationPoint(2, acc, None, 390, 5, 0.1, scores=tuple(final))), seed)


def test_rest_mcts_against_rest_em_pairs_runs_of_the_same_seed():
    good, bad = [1.0] * 30 + [0.0] * 10, [1.0] * 20 + [0.0] * 20
    em_by_seed = {s: [1.0] * (16 + 4 * s) + [0.0] * (24 - 4 * s) for s in (0, 1, 2)}  # 0.4, 0.5, 0.6
    runs = [_run("rest_mcts", s, good) for s in (0, 1, 2)] + [_run("rest_em", s, em_by_seed[s]) for s in (2, 0, 1)]
    rest = claims([], runs, None)[0][-3]
    assert rest.text == "ReST-MCTS* above ReST-EM after 2 iterations"
    assert rest.holds is True and "3 seed(s) (0, 1, 2)" in rest.evidence and "n = 120" in rest.evidence
    assert "0.750 (range 0.750-0.750, 3 seeds)" in rest.evidence and "0.500 (range 0.400-0.600, 3 seeds)" in rest.evidence
    assert "difference +0.250" in rest.evidence  # each seed against its own ReST-EM run
    unpaired = claims([], [_run("rest_mcts", 0, good), _run("rest_em", 1, bad)], None)[0][-3]
    assert unpaired.holds is None and "share a seed" in unpaired.evidence
    # the final models of both runs on the grid's harder split, greedy CoT, paired per seed
    grid = [_measured("cot", 1, 80, scores, models=f"{algo}-{s}", difficulty="6")
            for s in (0, 1, 2) for algo, scores in (("mcts", good), ("em", bad))]
    run_models = {r.path: f"{'mcts' if r.algorithm == 'rest_mcts' else 'em'}-{r.seed}" for r in runs}
    final = claims(grid, runs, None, run_models=run_models)[0][-3]
    assert final.text == "ReST-MCTS* above ReST-EM, final models (2 iterations), greedy CoT on 6 ops"
    assert final.holds is True and "0.750 vs 0.500 (mean over 3 seed(s))" in final.evidence


def test_weighted_vote_and_best_of_n_pick_by_value():
    a1, a2, b = _trace("q", "1", True), _trace("q", "1", True), _trace("q", "2", False)
    assert weighted_vote([(a1, 0.1), (a2, 0.1), (b, 0.9)]) is b  # 0.9 outweighs two votes of 0.1
    assert weighted_vote([(a1, 0.5), (a2, 0.5), (b, 0.9)]) is a1
    assert highest_value([(a1, 0.2), (b, 0.3)]) is b


def test_prm_table_scores_each_question_on_its_first_n_solutions():
    sols = [_trace("q1", "2", False), _trace("q1", "1", True), _trace("q1", "1", True),
            _trace("q2", "5", True), _trace("q2", None, False)]
    scores = [[0.9], [0.4], [0.4], [0.1], [0.9]]  # min over prefixes = the one value
    assert _pick_scores(sols, scores, weighted_vote, ["q1", "q2", "q3"], 1) == [0.0, 1.0, 0.0]
    assert _pick_scores(sols, scores, weighted_vote, ["q1", "q2", "q3"]) == [0.0, 1.0, 0.0]  # 0.9 > 0.4 + 0.4
    assert _pick_scores(sols, scores, highest_value, ["q1", "q2"], 2) == [0.0, 1.0]
    scores[0] = [0.5]  # "2" outweighs one "1" (0.4) but not two (0.8)
    assert _pick_scores(sols, scores, weighted_vote, ["q1"], 2) == [0.0]
    assert _pick_scores(sols, scores, weighted_vote, ["q1"], 3) == [1.0]
    assert _pick_scores(sols, scores, highest_value, ["q1"], 1) == [0.0]


def test_depth_auroc_does_not_penalise_values_that_grow_with_depth():
    """Values that rise with depth (progress) but rank right above wrong at every depth: pooled
    AUROC is poor, same-depth AUROC is perfect; last-prefix scoring picks the higher final value."""
    good, bad = _trace("q", "1", True, ("a", "b", "c")), _trace("q", "2", False, ("a", "x", "y"))
    truth = {"a": True, "b": True, "c": True, "x": False, "y": False}

    def labels(q, steps):
        return [truth[s] for s in steps]

    scores = [[0.1, 0.3, 0.9], [0.1, 0.2, 0.8]]  # the wrong path's late steps outscore the right path's start
    steps = [labels(t.question, t.steps) for t in (good, bad)]
    assert _auroc(scores, steps) < 0.7
    assert _depth_auroc(scores, steps) == 1.0  # depth 0 has only right steps: left out
    assert _pick_accuracy([good, bad], scores, highest_value, 1, last=True) == 1.0
    assert _pick_accuracy([good, bad], [[0.1, 0.3, 0.9], [0.2, 0.9, 0.9]], highest_value, 1) == 0.0  # min: 0.1 < 0.2


def test_false_positive_rate_counts_right_answers_with_a_wrong_step():
    p = arith_problem(3, num_ops=2)
    right = tuple(p.solution())
    value, (sym, x) = p.start, p.ops[0]
    slip = (f"{value} {sym} {x} = 999",) + right[1:]  # a wrong first step, the right final answer
    traces = [_trace("a", str(p.answer), True, right, p.text), _trace("b", str(p.answer), True, slip, p.text),
              _trace("c", "5", False, slip, p.text)]

    def labels(q, steps):
        return step_labels(parse_question(q), steps)

    assert false_positive_rate(traces, labels) == 0.5


def test_monte_carlo_labels_value_each_prefix_by_its_rollouts():
    p = arith_problem(7, num_ops=3)
    cfg = SearchConfig(max_depth=6, temperature=0.7)

    def check(answer):
        return answer == str(p.answer)

    policy = ArithPolicy(p=1.0)
    labels, budget = asyncio.run(monte_carlo_labels(p.text, Models(policy, ArithPRM()), ARITH, cfg, 0, check, 3))
    assert [v for _, v in labels] == [1.0] * len(labels) and len(labels) == len(p.ops) + 1
    assert budget.tokens == policy.tokens > 0
    assert budget.prm_calls == 0  # Monte Carlo labels cost policy tokens only

    policy = ArithPolicy(p=0.5)
    labels, budget = asyncio.run(monte_carlo_labels(p.text, Models(policy, ArithPRM()), ARITH, cfg, 1, check, 4))
    truth = step_labels(p, labels[-1][0])
    for (steps, v), ok in zip(labels, truth, strict=True):
        assert v in (0.0, 0.25, 0.5, 0.75, 1.0)
        if not ok:
            assert v == 0.0, f"a prefix with a wrong step cannot reach the right answer: {steps}"
    assert budget.tokens == policy.tokens


def test_read_run_names_the_key_for_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="eval.self_train_runs"):
        read_run(str(tmp_path), None)


# --------------------------------------------------------------------------- the job, end to end


def _arith_overrides(ckpt) -> list[str]:
    return [
        f"model.policy={ckpt}/policy", f"model.prm={ckpt}/prm",
        "data.arith_min_ops=1", "data.arith_max_ops=2", "data.arith_test_ops=2", "data.num_test=8",
        "search.max_depth=4", "search.max_step_tokens=12", "search.num_workers=1", "search.trees_per_worker=16",
        "learners.num_learners=0", "learners.policy_epochs=1", "learners.prm_epochs=1",
    ]


@pytest.mark.slow
def test_evaluate_job_on_arith_writes_the_report(ray_local, trained_ckpt, tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "jobs"))
    import evaluate as job

    from restmcts.loop import self_train

    base = _arith_overrides(trained_ckpt)
    runs = {}
    for algo in ("rest_mcts", "rest_em"):
        runs[algo] = tmp_path / algo
        cfg = load_config(ROOT / "configs/arith-tiny.yaml", base + [
            "loop.iterations=1", "data.num_questions=8", "search.num_simulations=4", f"loop.algorithm={algo}",
            "loop.rest_em_samples=2"])
        self_train(cfg, str(runs[algo]))
    out = tmp_path / "eval"
    args = ["--config", str(ROOT / "configs/arith-tiny.yaml"), "--out", str(out), *base,
            "eval.sample_budgets=[1,2]", "eval.max_samples=2", "eval.beam_budgets=[1]", "eval.simulation_budgets=[2,4]",
            "eval.num_test=6", "eval.difficulties=[2,3]", "eval.curve_iterations=[1]", "eval.resamples=200",
            "eval.prm_questions=6", "eval.prm_rollouts=2", "eval.prm_samples=2", "eval.prm_epochs=1",
            f"eval.self_train_runs=[{runs['rest_mcts']},{runs['rest_em']}]"]
    assert job.main(args) == 0

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["strategy", "budget", "accuracy", "avg_tokens", "prm_calls", "n_questions",
                             "seconds_per_question", "ci_low", "ci_high", "models", "difficulty"]
    slice_rows = [("cot", 1), ("sc", 1), ("sc", 2), ("bon", 1), ("bon", 2), ("sc_prm", 1), ("sc_prm", 2),
                  ("tot", 1), ("mcts_star", 2), ("mcts_star", 4)]
    no_tot = [r for r in slice_rows if r[0] != "tot"]
    final_em = [("cot", 1)]  # ReST-EM's final models: greedy CoT (ReST-MCTS*'s final models are iter_1)
    assert [(r["models"], r["difficulty"], r["strategy"], int(r["budget"])) for r in rows] == [
        (m, d, s, b) for m, strategies in (("bootstrap", slice_rows), ("iter_1", no_tot),
                                           ("rest_em-seed0-iter_1", final_em)) for d in ("2", "3")
        for s, b in strategies]
    for r in rows:
        assert 0.0 <= float(r["ci_low"]) <= float(r["accuracy"]) <= float(r["ci_high"]) <= 1.0
        assert float(r["avg_tokens"]) > 0 and int(r["n_questions"]) == 6
        assert float(r["seconds_per_question"]) > 0
    by = {(r["models"], r["difficulty"], r["strategy"], r["budget"]): r for r in rows}
    assert float(by[("bootstrap", "2", "cot", "1")]["prm_calls"]) == 0
    assert float(by[("bootstrap", "2", "bon", "2")]["prm_calls"]) > 0 and float(by[("bootstrap", "2", "sc", "2")]["prm_calls"]) == 0
    assert float(by[("bootstrap", "2", "sc", "2")]["avg_tokens"]) == pytest.approx(
        2 * float(by[("bootstrap", "2", "sc", "1")]["avg_tokens"]), abs=1e-3)  # one pass, subsampled
    for d in ("2", "3"):  # PRM calls counted from the chains: at all samples, what the pass sent
        sent = json.loads((out / "grid" / "bootstrap" / d / "samples-2.json").read_text())["prm_calls"]
        assert float(by[("bootstrap", d, "bon", "2")]["prm_calls"]) == pytest.approx(sent, abs=1e-3) and sent > 0
        first = {}  # N = 1: each question's first chain, every prefix of it if it has an answer
        for t in replay.read_traces(str(out / "grid" / "bootstrap" / d / "samples-2.parquet")):
            first.setdefault(t.question_id, t)
        one = sum(len(t.steps) for t in first.values() if t.answer is not None) / 6
        assert float(by[("bootstrap", d, "bon", "1")]["prm_calls"]) == pytest.approx(one, abs=1e-3)
    for png in ("accuracy_vs_tokens.png", "self_training.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with open(out / "prm_quality.csv") as f:
        prms = {r["name"]: r for r in csv.DictReader(f)}
    assert set(prms) == {"bootstrap", "mcts_values", "monte_carlo"}
    for r in prms.values():
        assert 0.0 <= float(r["auroc"]) <= 1.0
        assert r["depth_auroc"] == "" or 0.0 <= float(r["depth_auroc"]) <= 1.0  # "": no depth has both kinds
        assert 0.0 <= float(r["best_of_n_last_accuracy"]) <= 1.0
        assert float(r["sc_prm_n2"]) == float(r["weighted_sc_accuracy"])  # N = all samples
    mc_tokens, mcts_tokens = int(prms["monte_carlo"]["label_tokens"]), int(prms["mcts_values"]["label_tokens"])
    assert mc_tokens >= mcts_tokens > 0, "Monte Carlo labelling runs until it has spent the MCTS* budget"
    # the tiny policy may solve none of the MCTS* questions (no values inferred); Monte Carlo labels every prefix
    assert int(prms["monte_carlo"]["train_samples"]) > 0
    for name in ("mcts_values", "monte_carlo"):
        assert int(prms[name]["train_samples"]) == len(replay.read_values(str(out / "prm" / f"{name}.parquet")))
        assert (out / "prm" / name / "model.safetensors").exists()

    report = (out / "report.md").read_text()
    assert report.count("| ReST-MCTS* (") == 2 and report.count("| ReST-EM (") == 2
    assert "python jobs/evaluate.py" in report and "Machine:" in report
    claims_table = report.split("## Claims", 1)[1].split("\n## ", 1)[0]
    rows_md = [line for line in claims_table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    # per difficulty 4 rivals (iter_1: no ToT); ReST-MCTS* vs ReST-EM by the loop, then at each difficulty; 2 PRM claims
    assert len(rows_md) == 2 * 4 + 2 * 3 + 1 + 2 + 2
    assert "MCTS* above Self-Consistency at matched tokens (iter_1 models, 3 ops)" in claims_table
    assert "ReST-MCTS* above ReST-EM after 1 iterations" in claims_table
    assert "ReST-MCTS* above ReST-EM, final models (1 iterations), greedy CoT on 3 ops" in claims_table
    measured = [line for line in rows_md if "not measured" not in line]
    assert len(measured) == len(rows_md) and all("p = " in line for line in measured)
    paired = report.split("## Paired tests at matched tokens", 1)[1].split("\n## ", 1)[0]
    assert paired.count("\n| ") == 1 + (2 * 4 + 2 * 3) * 2  # the header; each claim pairs 2 MCTS* budgets

    slice_dir = out / "grid" / "bootstrap" / "2"
    assert (slice_dir / "mcts_star-4.checkpoints.jsonl").exists() and not (slice_dir / "mcts_star-2.json").exists()
    marker = slice_dir / "samples-2.json"
    before = marker.stat().st_mtime_ns
    assert job.main(args) == 0, "a rerun reuses every finished part"
    assert marker.stat().st_mtime_ns == before
    assert json.loads(marker.read_text())["strategy"] == "samples"


@pytest.mark.slow
def test_evaluate_runs_on_gsm8k_files_by_local_path(ray_local, tiny_ckpt, tmp_path):
    """The same harness on a real benchmark's file format; accuracy is near zero with the tiny
    random model, the point is the path (no true step labels: no AUROC)."""
    from restmcts.evaluation.driver import evaluate

    fixture = ROOT / "tests" / "fixtures" / "gsm8k_small.jsonl"
    cfg = load_config(ROOT / "configs/arith-tiny.yaml", [
        f"model.policy={tiny_ckpt}/policy", f"model.prm={tiny_ckpt}/prm",
        "data.task=gsm8k", f"data.train_path={fixture}", f"data.test_path={fixture}", "data.num_test=3",
        "search.max_depth=2", "search.max_step_tokens=6", "search.num_workers=1",
        "learners.num_learners=0", "eval.strategies=[cot,sc,mcts_star]", "eval.sample_budgets=[2]",
        "eval.simulation_budgets=[2]", "eval.max_samples=2", "eval.difficulties=[]", "eval.num_test=3", "eval.prm_questions=2", "eval.prm_rollouts=1", "eval.prm_samples=2",
        "eval.prm_epochs=1"])
    report = evaluate(cfg, str(tmp_path), "python jobs/evaluate.py ...")
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["strategy"] for r in rows] == ["cot", "sc", "mcts_star"]
    assert all(int(r["n_questions"]) == 3 for r in rows)
    with open(tmp_path / "prm_quality.csv") as f:
        prms = list(csv.DictReader(f))
    assert len(prms) == 3 and all(r["auroc"] == "" for r in prms)
    assert "Task `gsm8k`" in report
