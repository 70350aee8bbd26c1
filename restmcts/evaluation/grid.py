"""The equal-budget comparison: each strategy at each of its budgets over held-out questions.

Every point comes from search passes through the inference servers (the same actors as the
self-training loop), so accuracy, generated tokens and PRM calls are counted the same way for
all strategies. CoT, ToT and MCTS* run one pass per budget; SC, PRM best-of-N and PRM-weighted
SC (sc_prm) read the first N chains of one pass of `eval.max_samples` samples per question
(restmcts.evaluation.sampling). A slice (one model set on one held-out split) keeps its passes'
traces and summaries in `DIR/grid/<models>/<difficulty>/`; a rerun reads finished passes back
instead of searching again. Every point carries its per-question scores, for intervals and
paired tests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from restmcts import replay, storage
from restmcts.config import Config, EvalConfig, SearchConfig, evaluation_search
from restmcts.evaluation.sampling import SAMPLING, subsample_scores
from restmcts.evaluation.stats import bootstrap_ci
from restmcts.tasks import Question


@dataclass(frozen=True)
class GridPoint:
    """One row of results.csv."""

    strategy: str
    budget: int  # N for sc/bon/sc_prm, beam width for tot, simulations for mcts_star, 1 for cot
    accuracy: float
    avg_tokens: float  # policy tokens generated per question
    prm_calls: float  # prefixes scored by the PRM per question
    n_questions: int
    seconds_per_question: float | None = None  # wall time of the pass / questions (None: not recorded)
    ci_low: float | None = None  # 95% bootstrap interval of the accuracy, over questions
    ci_high: float | None = None
    models: str = "bootstrap"  # the model set: bootstrap (model.policy / model.prm) or iter_<i> of a run
    difficulty: str = "test"  # arith: operations per question; "test": the configured test split


@dataclass(frozen=True)
class Measured:
    """A grid point and its per-question scores (1 right, 0 wrong), in the slice's question order."""

    point: GridPoint
    scores: tuple[float, ...]


@dataclass(frozen=True)
class Slice:
    """One model set on one held-out split."""

    models: str
    difficulty: str
    questions: tuple[Question, ...]
    strategies: tuple[str, ...]

    @property
    def dir(self) -> str:
        return f"grid/{self.models}/{self.difficulty}"


def budget_points(ev: EvalConfig, strategies: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """Every (strategy, budget) row of a slice, in `eval.strategies` order."""
    budgets = {"cot": (1,), "sc": ev.sample_budgets, "bon": ev.sample_budgets, "sc_prm": ev.sample_budgets,
               "tot": ev.beam_budgets, "mcts_star": ev.simulation_budgets}
    names = ev.strategies if strategies is None else [s for s in ev.strategies if s in strategies]
    return [(name, b) for name in names for b in budgets[name]]


def passes(ev: EvalConfig, strategies: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """The search passes a slice needs: one per budget for cot, tot and mcts_star, and one
    sampling pass ("samples", eval.max_samples) shared by sc, bon and sc_prm."""
    out: list[tuple[str, int]] = []
    for name, b in budget_points(ev, strategies):
        if name in SAMPLING:
            if ("samples", ev.max_samples) not in out:
                out.append(("samples", ev.max_samples))
        else:
            out.append((name, b))
    return out


def search_config(base: SearchConfig, strategy: str, budget: int) -> SearchConfig:
    """`base` (the evaluation settings: `restmcts.config.evaluation_search`) with one strategy's
    budget knob set."""
    knob = {"cot": {}, "sc": {"num_samples": budget}, "bon": {"num_samples": budget},
            "tot": {"beam_width": budget}, "mcts_star": {"num_simulations": budget}}
    return dataclasses.replace(base, strategy=strategy, **knob[strategy])


def pass_search_config(cfg: Config, strategy: str, budget: int) -> SearchConfig:
    """One grid pass's search settings; the sampling pass is PRM best-of-N at eval.max_samples,
    which keeps every chain with its PRM value."""
    base = evaluation_search(cfg)
    if strategy == "samples":
        return search_config(base, "bon", budget)
    return search_config(base, strategy, budget)


def run_grid(cfg: Config, servers: Any, questions: Sequence[Question], out: str, models: str = "bootstrap",
             difficulty: str = "test", strategies: Sequence[str] | None = None,
             prepare: Callable[[], None] | None = None) -> list[Measured]:
    """Every point of one slice; each pass runs once and is read back on a rerun. `prepare` runs
    before the first pass that has to search (the driver loads the slice's models there)."""
    from restmcts.actors.search_pass import run_pass
    from restmcts.progress import progress

    piece = Slice(models, difficulty, tuple(questions), tuple(strategies or cfg.eval.strategies))
    d = f"{out}/{piece.dir}"
    todo = passes(cfg.eval, piece.strategies)
    bar = progress(len(todo), f"grid {models} {difficulty}", unit="passes")
    for strategy, budget in todo:
        name = f"{strategy}-{budget}"
        done = f"{d}/{name}.json"
        if not storage.exists(done):
            if prepare is not None:
                prepare()
                prepare = None
            summary = run_pass(cfg, servers, list(questions), pass_search_config(cfg, strategy, budget), 0, d,
                               traces_name=f"{name}.parquet", values_name=None, label=f"{models} {difficulty} {name}")
            n = max(summary.questions, 1)
            storage.write_text(done, json.dumps({
                "strategy": strategy, "budget": budget, "n_questions": summary.questions,
                "accuracy": summary.accuracy, "avg_tokens": summary.tokens / n, "prm_calls": summary.prm_calls / n,
                "seconds_per_question": round(summary.wall_seconds / n, 3)}))
        bar.update(1, last=name)
    bar.close()
    return read_slice(cfg.eval, piece, out)


def read_slice(ev: EvalConfig, piece: Slice, out: str) -> list[Measured]:
    """A slice's points from its finished passes (per-question scores from the traces' chosen rows,
    or, for sc / bon / sc_prm, from the first N chains of the sampling pass)."""
    d = f"{out}/{piece.dir}"
    ids = [q.id for q in piece.questions]
    cache: dict[str, tuple[dict[str, Any], list[Any]]] = {}

    def load(name: str) -> tuple[dict[str, Any], list[Any]]:
        if name not in cache:
            summary = json.loads(storage.read_text(f"{d}/{name}.json"))
            if summary["n_questions"] != len(ids):
                raise ValueError(f"{d}/{name}.json: searched {summary['n_questions']} questions, this run asks "
                                 f"for {len(ids)} (eval.num_test changed?); use a new --out or remove {d}")
            cache[name] = (summary, replay.read_traces(f"{d}/{name}.parquet"))
        return cache[name]

    points = []
    for strategy, budget in budget_points(ev, piece.strategies):
        if strategy in SAMPLING:
            summary, traces = load(f"samples-{ev.max_samples}")
            scores = subsample_scores(traces, ids, strategy, budget)
            share = budget / ev.max_samples
            tokens = summary["avg_tokens"] * share
            prm = 0.0 if strategy == "sc" else summary["prm_calls"] * share  # SC reads no PRM value
            seconds = summary["seconds_per_question"] * share
        else:
            summary, traces = load(f"{strategy}-{budget}")
            right = {t.question_id for t in traces if t.chosen and t.correct}
            scores = [1.0 if q in right else 0.0 for q in ids]
            tokens, prm, seconds = summary["avg_tokens"], summary["prm_calls"], summary["seconds_per_question"]
        points.append(measure(ev, strategy, budget, scores, tokens, prm, seconds, piece.models, piece.difficulty))
    return points


def measure(ev: EvalConfig, strategy: str, budget: int, scores: Sequence[float], tokens: float, prm_calls: float,
            seconds: float | None, models: str, difficulty: str) -> Measured:
    low, high = bootstrap_ci(scores, ev.resamples)
    accuracy = sum(scores) / len(scores) if scores else 0.0
    return Measured(GridPoint(strategy, budget, accuracy, tokens, prm_calls, len(scores), seconds, low, high,
                              models, difficulty), tuple(scores))
