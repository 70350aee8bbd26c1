"""The equal-budget comparison: each strategy at each of its budgets over the held-out split.

Every point is one search pass through the inference servers (the same actors as the
self-training loop), so accuracy, generated tokens and PRM calls are counted the same way for
all strategies. A point's traces and summary land in `DIR/grid/<strategy>-<budget>.*`; a rerun
reads finished points back instead of searching again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from restmcts import replay
from restmcts.config import Config, EvalConfig, SearchConfig
from restmcts.tasks import Question


@dataclass(frozen=True)
class GridPoint:
    """One row of results.csv."""

    strategy: str
    budget: int  # N for sc/bon, beam width for tot, simulations for mcts_star, 1 for cot
    accuracy: float
    avg_tokens: float  # policy tokens generated per question
    prm_calls: float  # prefixes scored by the PRM per question
    n_questions: int
    seconds_per_question: float | None = None  # wall time of the pass / questions (None: not recorded)


def budget_points(ev: EvalConfig) -> list[tuple[str, int]]:
    budgets = {"cot": (1,), "sc": ev.sample_budgets, "bon": ev.sample_budgets, "tot": ev.beam_budgets,
               "mcts_star": ev.simulation_budgets}
    return [(name, b) for name in ev.strategies for b in budgets[name]]


def search_config(base: SearchConfig, strategy: str, budget: int) -> SearchConfig:
    """The base search settings with one strategy's budget knob set; MCTS* stops early as in
    evaluation (a terminal node with v >= end_gate)."""
    knob = {"cot": {}, "sc": {"num_samples": budget}, "bon": {"num_samples": budget},
            "tot": {"beam_width": budget}, "mcts_star": {"num_simulations": budget, "early_stop": True}}
    return dataclasses.replace(base, strategy=strategy, **knob[strategy])


def run_grid(cfg: Config, servers: Any, questions: list[Question], out: str) -> list[GridPoint]:
    from restmcts.actors.search_pass import run_pass

    points = []
    for strategy, budget in budget_points(cfg.eval):
        name = f"{strategy}-{budget}"
        done = f"{out}/grid/{name}.json"
        if not replay.exists(done):
            summary = run_pass(cfg, servers, questions, search_config(cfg.search, strategy, budget), 0,
                               f"{out}/grid", traces_name=f"{name}.parquet", values_name=None, label=name)
            n = max(summary.questions, 1)
            point = GridPoint(strategy, budget, summary.accuracy, summary.tokens / n, summary.prm_calls / n,
                              summary.questions, round(summary.wall_seconds / n, 3))
            replay.write_text(done, json.dumps(dataclasses.asdict(point)))
        points.append(GridPoint(**json.loads(replay.read_text(done))))
    return points
