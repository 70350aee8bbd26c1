"""The run log (typed phase records, resume points), the algorithm objects, and the independent
held-out check."""

from __future__ import annotations

import dataclasses
import json
import shutil
import typing
from pathlib import Path

import pytest

from restmcts.config import ConfigError, LoopConfig, load_config
from restmcts.loop.algorithms import ALGORITHMS, REST_EM, REST_MCTS, algorithm_for
from restmcts.loop.heldout import independent_accuracy
from restmcts.loop.state import (
    PHASES,
    EvaluationStats,
    ExtractStats,
    LearnerStats,
    PassStats,
    PhaseRecord,
    RunState,
    SyncStats,
)
from restmcts.replay import Trace

FIXTURES = Path(__file__).parent / "fixtures"
OLD_RUN = FIXTURES / "metrics_old_run.jsonl"  # a run's log from before bad_scores and step_losses were logged


def _pass(kind: type[PassStats] = PassStats, **more) -> PassStats:
    return kind(accuracy=0.5, solved_fraction=0.75, questions=4, samples=9, value_samples=30, tokens=800,
                avg_tokens=200.0, prm_calls=120, retries=0, resumed=1, failures=0, bad_scores=2, wasted_tokens=16,
                finished=3, wall_seconds=12.5, phases={"policy_wait": 3.25, "prm_wait": 1.5}, **more)


def _learner(role: str) -> LearnerStats:
    return LearnerStats(role=role, init_path="a", out_path="b", samples=9, world_size=1, epochs=1, steps=3,
                        epoch_losses=(0.5,), final_loss=0.25, train_seconds=2.0, samples_per_s=4.5, tokens_per_s=90.0,
                        truncated=0, weights_digests=("d1",), restarts=1, step_losses=(0.75, 0.5, 0.25),
                        learner_seconds=3.5)


ONE_ITERATION = [
    (0, "evaluate", _pass(EvaluationStats, heldout_accuracy=None)),
    (1, "search", _pass()),
    (1, "extract", ExtractStats(samples=5, traces=9, prm_samples=30, questions_with_data=3)),
    (1, "train_prm", _learner("prm")),
    (1, "train_policy", _learner("policy")),
    (1, "sync", SyncStats(policy="out/iter_1/policy", prm="out/iter_1/prm")),
    (1, "evaluate", _pass(EvaluationStats, heldout_accuracy=0.5)),
]


def test_every_phase_record_reads_back_typed_with_its_keys(tmp_path):
    state = RunState.open(str(tmp_path))
    assert not state.done(1, "search")
    written = [state.record(i, phase, 1.23456, stats) for i, phase, stats in ONE_ITERATION]
    reopened = RunState.open(str(tmp_path))
    assert reopened.records == written == state.records
    assert [(r.iteration, r.phase, r.stats) for r in reopened.records] == ONE_ITERATION
    assert reopened.done(1, "search") and not reopened.done(2, "search")
    assert reopened.get(1, "train_prm").stats.step_losses == (0.75, 0.5, 0.25)
    assert [r.iteration for r in reopened.of_phase("evaluate")] == [0, 1]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [json.loads(json.dumps(r.to_dict())) for r in written]
    assert lines[1] == {"iteration": 1, "phase": "search", "seconds": 1.235, "time": written[1].time,
                        "accuracy": 0.5, "solved_fraction": 0.75, "questions": 4, "samples": 9, "value_samples": 30,
                        "tokens": 800, "avg_tokens": 200.0, "prm_calls": 120, "retries": 0, "resumed": 1,
                        "failures": 0, "bad_scores": 2, "wasted_tokens": 16, "finished": 3, "wall_seconds": 12.5,
                        "phases": {"policy_wait": 3.25, "prm_wait": 1.5}}
    assert set(lines[3]) == {"iteration", "phase", "seconds", "time", "role", "init_path", "out_path", "samples",
                             "world_size", "epochs", "steps", "epoch_losses", "final_loss", "train_seconds",
                             "samples_per_s", "tokens_per_s", "truncated", "weights_digests", "restarts",
                             "step_losses", "learner_seconds"}
    assert lines[-1]["heldout_accuracy"] == 0.5 and lines[5]["policy"] == "out/iter_1/policy"


def test_a_phase_logs_only_its_own_statistics(tmp_path):
    state = RunState.open(str(tmp_path))
    with pytest.raises(TypeError, match="phase 'evaluate' logs EvaluationStats, not PassStats"):
        state.record(0, "evaluate", 1.0, _pass())
    with pytest.raises(TypeError, match="phase 'train' logs nothing"):
        state.record(1, "train", 1.0, _learner("prm"))
    assert not (tmp_path / "metrics.jsonl").exists()


def test_an_old_run_still_reads_and_resumes(tmp_path):
    """A log written before bad_scores, wasted_tokens, finished and step_losses existed reads into
    typed records (those fields at their defaults); logging a new phase keeps its lines as they were."""
    shutil.copy(OLD_RUN, tmp_path / "metrics.jsonl")
    state = RunState.open(str(tmp_path))
    assert [(r.iteration, r.phase) for r in state.records] == \
        [(0, "evaluate")] + [(i, p) for i in (1, 2) for p in PHASES]
    first, last = state.get(0, "evaluate").stats, state.get(2, "evaluate").stats
    assert (first.accuracy, first.heldout_accuracy, first.questions, first.bad_scores) == (0.39, 0.39, 100, 0)
    assert last.accuracy == 0.68 and state.get(2, "search").stats.avg_tokens == 400.5986328125
    prm = state.get(2, "train_prm").stats
    assert prm.samples == 6947 and prm.step_losses == () and len(prm.epoch_losses) == prm.epochs == 2
    assert state.get(1, "sync").stats.prm.endswith("iter_1/prm")
    state.record(3, "search", 2.0, _pass())
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines[:-1] == OLD_RUN.read_text().splitlines()
    assert RunState.open(str(tmp_path)).get(3, "search").stats == _pass()


def test_an_old_run_renders_its_report(tmp_path):
    from restmcts.loop.report import render_report

    shutil.copy(OLD_RUN, tmp_path / "metrics.jsonl")
    page = render_report(tmp_path, RunState.open(str(tmp_path)).records)
    assert "39.0%" in page and "68.0%" in page and "6947" in page  # held-out accuracy, PRM samples
    assert page.count("data:image/png;base64,") == 3


def test_a_record_without_a_field_fails_naming_file_line_and_key(tmp_path):
    lines = OLD_RUN.read_text().splitlines()
    broken = json.loads(lines[2])
    del broken["questions_with_data"]
    (tmp_path / "metrics.jsonl").write_text("\n".join([lines[0], lines[1], json.dumps(broken)]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl line 3: the extract record lacks 'questions_with_data'"):
        RunState.open(str(tmp_path))
    with pytest.raises(ValueError, match="unknown phase 'train'; known: search, extract, train_prm"):
        PhaseRecord.from_dict({"iteration": 1, "phase": "train", "seconds": 1.0})


def test_torn_last_line_reruns_that_phase(tmp_path):
    state = RunState.open(str(tmp_path))
    state.record(0, "evaluate", 1.0, _pass(EvaluationStats))
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 1, "pha')
    reopened = RunState.open(str(tmp_path))
    assert reopened.done(0, "evaluate") and not reopened.done(1, "search")
    reopened.record(1, "search", 1.0, _pass())
    assert [r.phase for r in RunState.open(str(tmp_path)).records] == ["evaluate", "search"]


# --------------------------------------------------------------------------- algorithms


def test_every_loop_algorithm_value_has_an_algorithm():
    assert tuple(ALGORITHMS) == typing.get_args(typing.get_type_hints(LoopConfig)["algorithm"])
    assert algorithm_for(load_config(None, [])) is REST_MCTS
    assert algorithm_for(load_config(None, ["loop.algorithm=rest_em"])) is REST_EM
    assert REST_MCTS.trains_prm and not REST_EM.trains_prm


def test_an_unknown_algorithm_names_the_key_and_the_valid_names():
    cfg = load_config(None, [])
    cfg = dataclasses.replace(cfg, loop=dataclasses.replace(cfg.loop, algorithm="rest_mcts_star"))
    with pytest.raises(ConfigError, match="loop.algorithm: got 'rest_mcts_star'; allowed: 'rest_mcts', 'rest_em'"):
        algorithm_for(cfg)


def test_search_settings_for_data_generation():
    cfg = load_config(None, ["search.num_simulations=7", "search.temperature=0.9", "loop.rest_em_samples=5"])
    assert REST_MCTS.search_settings(cfg) == cfg.search.settings()  # the search section's MCTS*
    em = REST_EM.search_settings(cfg)
    assert (em.strategy, em.num_samples) == ("sc", 5)  # self-consistency sampling, loop.rest_em_samples each
    assert em == dataclasses.replace(cfg.search.settings(), strategy="sc", num_samples=5)


def test_policy_data_filters():
    loop = LoopConfig(trace_min_value=0.6)

    def trace(qid: str, steps: tuple[str, ...], correct: bool, value: float | None) -> Trace:
        return Trace(qid, "q", steps, steps[-1], correct, 5, "mcts_star", 1, value=value)

    high, low, unvalued = trace("a", ("x",), True, 0.9), trace("a", ("y",), True, 0.3), trace("b", ("z",), True, None)
    wrong, again = trace("c", ("w",), False, 0.99), trace("a", ("x",), True, 0.9)
    traces = [high, low, unvalued, wrong, again]
    assert REST_MCTS.policy_data(traces, loop) == [high, unvalued]  # correct, value >= trace_min_value, once
    assert REST_EM.policy_data(traces, loop) == [high, low, unvalued]  # every correct one, once


def test_arith_gold_is_independent_of_the_task():
    from restmcts.config import DataConfig
    from restmcts.tasks.arith import ArithTask, independent_gold

    task = ArithTask(DataConfig())
    for q in task.questions("test", 50):
        assert independent_gold(q.question) == int(q.answer)
    assert independent_gold("What is 2 + 2?") is None


def test_independent_accuracy_counts_missing_as_wrong():
    q = "Start with 3. Multiply by 4. What is the result?"
    right = Trace("a", q, ("3 * 4 = 12", "The answer is 12"), "12", True, 5, "cot", 0, chosen=True)
    wrong = Trace("b", q, ("3 * 4 = 13", "The answer is 13"), "13", False, 5, "cot", 0, chosen=True)
    from restmcts.config import DataConfig
    from restmcts.tasks.arith import ArithTask, independent_final_number

    assert independent_final_number(("The answer is 7",)) == 7 and independent_final_number(("7",)) is None
    oracle = ArithTask(DataConfig()).independent_check
    assert independent_accuracy([right, wrong], ["a", "b", "c"], oracle) == 1 / 3
    assert independent_accuracy([right, wrong], ["a", "b", "c"], None) is None
    gsm = Trace("a", "Tom has 3 apples. How many?", ("The answer is 3",), "3", True, 5, "cot", 0, chosen=True)
    assert independent_accuracy([gsm], ["a"], oracle) is None
