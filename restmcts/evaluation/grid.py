"""The equal-budget comparison: each strategy at each of its budgets over held-out questions.

Every point comes from search passes through the inference servers (the same actors as the
self-training loop), so accuracy, generated tokens and PRM calls are counted the same way for
all strategies. CoT and ToT run one pass per budget; SC, PRM best-of-N and PRM-weighted SC
(sc_prm) read the first N chains of one pass of `eval.max_samples` samples per question
(restmcts.evaluation.sampling). MCTS* is anytime: one pass at the largest simulation budget records,
at every budget, what the search stopped there answers and spends (`search.record_at`,
restmcts.search.mcts "Anytime"; rows in `<pass>.checkpoints.jsonl`); its seconds per question are
the pass's, scaled by the checkpoint's share of the pass's tokens. A slice (one model set on one
held-out split) keeps its passes' traces and summaries in `DIR/grid/<models>/<difficulty>/`; a
rerun reads finished passes back instead of searching again. Every point carries its per-question scores, for intervals and
paired tests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from restmcts import storage
from restmcts.config import Config, EvalConfig, SearchSettings, evaluation_search
from restmcts.evaluation.sampling import PICKS, SAMPLING, subsample_prm_calls, subsample_scores
from restmcts.evaluation.stats import bootstrap_ci
from restmcts.search.strategies import STRATEGIES
from restmcts.tasks import Question

if TYPE_CHECKING:
    from restmcts.actors.servers import Servers

# The pass sc, bon and sc_prm read their first N chains from: PRM best-of-N, which keeps every chain
# with its PRM value.
SAMPLING_PASS = "bon"

# Anytime strategies: one pass at the largest budget, every budget's point read from the checkpoints
# the search records on the way (search.record_at: the answer and spend of a search stopped there).
ANYTIME = ("mcts_star",)


def grid_strategies() -> dict[str, str | None]:
    """Every strategy the grid runs, with the search setting that is its budget (EvalConfig.budgets):
    the search strategies (restmcts.search.strategies), and the votes read from the sampling pass
    (sc_prm) at that pass's budget."""
    return {**{name: s.budget for name, s in STRATEGIES.items()},
            **{name: STRATEGIES[SAMPLING_PASS].budget for name in PICKS if name not in STRATEGIES}}


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
    names = ev.strategies if strategies is None else [s for s in ev.strategies if s in strategies]
    knobs = grid_strategies()
    return [(name, b) for name in names for b in ev.budgets(knobs[name])]


def passes(ev: EvalConfig, strategies: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """The search passes a slice needs: one per budget for cot, tot and mcts_star, and one
    sampling pass ("samples", eval.max_samples) shared by sc, bon and sc_prm (SAMPLING)."""
    out: list[tuple[str, int]] = []
    for name, b in budget_points(ev, strategies):
        if name in SAMPLING:
            if ("samples", ev.max_samples) not in out:
                out.append(("samples", ev.max_samples))
        elif name in ANYTIME:
            if (name, max(anytime_budgets(ev, name))) not in out:
                out.append((name, max(anytime_budgets(ev, name))))
        else:
            out.append((name, b))
    return out


def anytime_budgets(ev: EvalConfig, strategy: str) -> tuple[int, ...]:
    """An ANYTIME strategy's budgets: the counts its one pass records (search.record_at)."""
    return tuple(sorted({b for name, b in budget_points(ev, [strategy])}))


def search_config(base: SearchSettings, strategy: str, budget: int) -> SearchSettings:
    """`base` (the evaluation settings: `restmcts.config.evaluation_search`) with one search
    strategy's budget setting (restmcts.search.strategies) at `budget`."""
    knob = STRATEGIES[strategy].budget
    return dataclasses.replace(base, strategy=strategy, **({knob: budget} if knob is not None else {}))


def pass_search_config(cfg: Config, strategy: str, budget: int) -> SearchSettings:
    """One grid pass's search settings; the sampling pass ("samples") is SAMPLING_PASS at
    eval.max_samples."""
    settings = search_config(evaluation_search(cfg), SAMPLING_PASS if strategy == "samples" else strategy, budget)
    if strategy in ANYTIME:
        settings = dataclasses.replace(settings, record_at=anytime_budgets(cfg.eval, strategy))
    return settings


def run_grid(cfg: Config, servers: Servers, questions: Sequence[Question], out: str, models: str = "bootstrap",
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
    return read_slice(cfg, piece, out)


def read_slice(cfg: Config, piece: Slice, out: str) -> list[Measured]:
    """A slice's points from its finished passes (per-question scores from the traces' chosen rows,
    or, for sc / bon / sc_prm, from the first N chains of the sampling pass)."""
    from restmcts import replay
    from restmcts.actors.search_pass import checkpoints_path

    ev = cfg.eval
    aggregate = pass_search_config(cfg, "samples", ev.max_samples).bon_aggregate
    d = f"{out}/{piece.dir}"
    ids = [q.id for q in piece.questions]
    cache: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    recorded: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}

    def load(name: str) -> tuple[dict[str, Any], list[Any]]:
        if name not in cache:
            summary = json.loads(storage.read_text(f"{d}/{name}.json"))
            if summary["n_questions"] != len(ids):
                raise ValueError(f"{d}/{name}.json: searched {summary['n_questions']} questions, this run asks "
                                 f"for {len(ids)} (eval.num_test changed?); use a new --out or remove {d}")
            cache[name] = (summary, replay.read_traces(f"{d}/{name}.parquet"))
        return cache[name]

    def checkpoints(name: str) -> dict[tuple[str, int], dict[str, Any]]:
        """An anytime pass's checkpoint rows by (question id, simulation count)."""
        if name not in recorded:
            path = checkpoints_path(d, f"{name}.parquet")
            lines = storage.read_text(path).splitlines() if storage.exists(path) else []
            recorded[name] = {(r["question_id"], r["at"]): r for r in map(json.loads, lines)}
        return recorded[name]

    points = []
    for strategy, budget in budget_points(ev, piece.strategies):
        if strategy in SAMPLING:
            summary, traces = load(f"samples-{ev.max_samples}")
            scores = subsample_scores(traces, ids, strategy, budget)
            share = budget / ev.max_samples
            tokens = summary["avg_tokens"] * share
            prm = 0.0 if strategy == "sc" else subsample_prm_calls(traces, ids, budget, aggregate)  # SC reads none
            seconds = summary["seconds_per_question"] * share
        elif strategy in ANYTIME:
            name = f"{strategy}-{max(anytime_budgets(ev, strategy))}"
            summary, _ = load(name)
            rows = checkpoints(name)
            missing = [q for q in ids if (q, budget) not in rows]
            if missing:
                raise ValueError(f"{d}/{name}: no checkpoint at {budget} simulations for {len(missing)} question(s) "
                                 f"(e.g. {missing[0]!r}); eval.simulation_budgets changed, or the pass predates "
                                 f"anytime MCTS*: use a new --out or remove {d}/{name}.*")
            at = [rows[q, budget] for q in ids]
            scores = [1.0 if r["best"] is not None and r["best"]["correct"] else 0.0 for r in at]
            n = max(len(at), 1)
            tokens, prm = sum(r["tokens"] for r in at) / n, sum(r["prm_calls"] for r in at) / n
            seconds = summary["seconds_per_question"] * tokens / max(summary["avg_tokens"], 1e-9)
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
