"""jobs/evaluate.py: the equal-budget grid, self-training runs side by side, PRM quality, the report."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest
from fakes import ARITH, ArithPolicy, ArithPRM, arith_problem

from restmcts.config import ConfigError, SearchConfig, load_config
from restmcts.evaluation.grid import GridPoint, budget_points, search_config
from restmcts.evaluation.prm_quality import (
    PRMQuality,
    _auroc,
    _depth_auroc,
    _pick_accuracy,
    best_of_n,
    weighted_vote,
)
from restmcts.evaluation.report import accuracy_at, claims
from restmcts.evaluation.runs import IterationPoint, RunCurve, false_positive_rate, read_run
from restmcts.replay import Trace
from restmcts.search import Models
from restmcts.search.montecarlo import monte_carlo_labels
from restmcts.tasks.arith import parse_question, step_labels

ROOT = Path(__file__).resolve().parents[1]


def _trace(qid: str, answer: str | None, correct: bool, steps: tuple[str, ...] = ("s",), question: str = "q") -> Trace:
    return Trace(qid, question, steps, answer, correct, 10, "sc", 0)


# --------------------------------------------------------------------------- pure parts


def test_each_strategy_gets_its_own_budget_knob():
    cfg = load_config(None, ["eval.sample_budgets=[2,4]", "eval.beam_budgets=[3]", "eval.simulation_budgets=[8]"])
    assert budget_points(cfg.eval) == [("cot", 1), ("sc", 2), ("sc", 4), ("bon", 2), ("bon", 4), ("tot", 3),
                                       ("mcts_star", 8)]
    base = SearchConfig()
    assert search_config(base, "sc", 4).num_samples == 4
    assert search_config(base, "bon", 2).num_samples == 2
    assert search_config(base, "tot", 3).beam_width == 3
    mcts = search_config(base, "mcts_star", 8)
    assert (mcts.strategy, mcts.num_simulations, mcts.early_stop) == ("mcts_star", 8, True)


def test_eval_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"eval\.strategies: unknown strategy 'mcts'"):
        load_config(None, ["eval.strategies=[cot,mcts]"])
    with pytest.raises(ConfigError, match=r"eval\.sample_budgets"):
        load_config(None, ["eval.sample_budgets=[0]"])
    with pytest.raises(ConfigError, match="Did you mean 'prm_rollouts'"):
        load_config(None, ["eval.prm_rolouts=2"])


def test_accuracy_at_interpolates_inside_the_measured_range_only():
    pts = [GridPoint("sc", 2, 0.2, 100, 0, 10), GridPoint("sc", 8, 0.5, 400, 0, 10)]
    assert accuracy_at(pts, 250) == pytest.approx(0.35)
    assert accuracy_at(pts, 100) == pytest.approx(0.2)
    assert accuracy_at(pts, 50) is None and accuracy_at(pts, 500) is None


def test_claims_compare_at_matched_tokens_and_say_when_not_measured():
    grid = [GridPoint("sc", 2, 0.2, 100, 0, 10), GridPoint("sc", 8, 0.5, 400, 0, 10),
            GridPoint("bon", 2, 0.3, 100, 9, 10), GridPoint("bon", 8, 0.4, 400, 30, 10),
            GridPoint("mcts_star", 4, 0.45, 250, 20, 10)]
    runs = [RunCurve("a", "rest_mcts", (IterationPoint(0, 0.3, None, 0, 0, None), IterationPoint(2, 0.5, None, 9, 5, 0.1))),
            RunCurve("b", "rest_em", (IterationPoint(0, 0.3, None, 0, 0, None), IterationPoint(2, 0.4, None, 9, 5, 0.3)))]
    prms = [PRMQuality("mcts_values", "", 8, 50, 1000, 0.7, 0.5, 0.5),
            PRMQuality("monte_carlo", "", 4, 20, 1100, 0.8, 0.4, 0.4)]
    sc, bon, rest, auroc = claims(grid, runs, prms)
    assert sc.holds is True and "0.450 vs 0.350" in sc.evidence  # sc at 250 tokens: 0.35
    assert bon.holds is True and "0.450 vs 0.350" in bon.evidence
    assert rest.holds is True and "0.500 vs 0.400" in rest.evidence
    assert auroc.holds is False and "0.700 vs 0.800" in auroc.evidence
    none = claims([GridPoint("mcts_star", 4, 0.45, 999, 20, 10)], [], [])
    assert [c.holds for c in none] == [None, None, None, None]


def test_weighted_vote_and_best_of_n_pick_by_value():
    a1, a2, b = _trace("q", "1", True), _trace("q", "1", True), _trace("q", "2", False)
    assert weighted_vote([(a1, 0.1), (a2, 0.1), (b, 0.9)]) is b  # 0.9 outweighs two votes of 0.1
    assert weighted_vote([(a1, 0.5), (a2, 0.5), (b, 0.9)]) is a1
    assert best_of_n([(a1, 0.2), (b, 0.3)]) is b


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
    assert _pick_accuracy([good, bad], scores, best_of_n, 1, last=True) == 1.0
    assert _pick_accuracy([good, bad], [[0.1, 0.3, 0.9], [0.2, 0.9, 0.9]], best_of_n, 1) == 0.0  # min: 0.1 < 0.2


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
            "eval.sample_budgets=[1,2]", "eval.beam_budgets=[1]", "eval.simulation_budgets=[2,4]",
            "eval.prm_questions=6", "eval.prm_rollouts=2", "eval.prm_samples=2", "eval.prm_epochs=1",
            f"eval.self_train_runs=[{runs['rest_mcts']},{runs['rest_em']}]"]
    assert job.main(args) == 0

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["strategy", "budget", "accuracy", "avg_tokens", "prm_calls", "n_questions",
                             "seconds_per_question"]
    assert [(r["strategy"], int(r["budget"])) for r in rows] == [
        ("cot", 1), ("sc", 1), ("sc", 2), ("bon", 1), ("bon", 2), ("tot", 1), ("mcts_star", 2), ("mcts_star", 4)]
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and float(r["avg_tokens"]) > 0 and int(r["n_questions"]) == 8
        assert float(r["seconds_per_question"]) > 0
    by = {(r["strategy"], r["budget"]): r for r in rows}
    assert float(by[("cot", "1")]["prm_calls"]) == 0 and float(by[("bon", "2")]["prm_calls"]) > 0
    assert float(by[("sc", "2")]["avg_tokens"]) > float(by[("sc", "1")]["avg_tokens"])
    for png in ("accuracy_vs_tokens.png", "self_training.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with open(out / "prm_quality.csv") as f:
        prms = {r["name"]: r for r in csv.DictReader(f)}
    assert set(prms) == {"bootstrap", "mcts_values", "monte_carlo"}
    for r in prms.values():
        assert 0.0 <= float(r["auroc"]) <= 1.0
        assert r["depth_auroc"] == "" or 0.0 <= float(r["depth_auroc"]) <= 1.0  # "": no depth has both kinds
        assert 0.0 <= float(r["best_of_n_last_accuracy"]) <= 1.0
    mc_tokens, mcts_tokens = int(prms["monte_carlo"]["label_tokens"]), int(prms["mcts_values"]["label_tokens"])
    assert mc_tokens >= mcts_tokens > 0, "Monte Carlo labelling runs until it has spent the MCTS* budget"
    for name in ("mcts_values", "monte_carlo"):
        assert int(prms[name]["train_samples"]) > 0
        assert (out / "prm" / name / "model.safetensors").exists()

    report = (out / "report.md").read_text()
    assert report.count("| ReST-MCTS* (") == 2 and report.count("| ReST-EM (") == 2
    assert "python jobs/evaluate.py" in report and "Machine:" in report
    claims_table = report.split("## Claims", 1)[1].split("##", 1)[0]
    assert claims_table.count("\n| ") == 5  # the header and four claims
    assert "ReST-MCTS* above ReST-EM after 1 iterations" in claims_table

    marker = out / "grid" / "sc-2.json"
    before = marker.stat().st_mtime_ns
    assert job.main(args) == 0, "a rerun reuses every finished part"
    assert marker.stat().st_mtime_ns == before
    assert json.loads(marker.read_text())["strategy"] == "sc"


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
        "eval.simulation_budgets=[2]", "eval.prm_questions=2", "eval.prm_rollouts=1", "eval.prm_samples=2",
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
