"""Self-training runs side by side (the paper's Table 2 in miniature), read from their folders.

For each `jobs/self_train.py` output folder: held-out accuracy per iteration (iteration 0 is
the bootstrap models), what the search spent per question, how much policy data it kept, and,
where the task knows the true per-step labels (arith), the false-positive rate of that policy
data: the fraction of outcome-correct traces that contain a wrong step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from restmcts import replay
from restmcts.loop.state import RunState

StepLabels = Callable[[str, Sequence[str]], list[bool]]


@dataclass(frozen=True)
class IterationPoint:
    iteration: int
    accuracy: float  # held-out greedy accuracy (the task's checker)
    heldout_accuracy: float | None  # the independent check, where the task has one
    search_tokens: float  # policy tokens per training question in this iteration's search (0 at iteration 0)
    policy_samples: int  # verified traces the policy trained on
    false_positive_rate: float | None  # policy traces with a wrong step, over all policy traces


@dataclass(frozen=True)
class RunCurve:
    path: str
    algorithm: str  # loop.algorithm of the run: rest_mcts or rest_em
    points: tuple[IterationPoint, ...]

    @property
    def label(self) -> str:
        return {"rest_mcts": "ReST-MCTS*", "rest_em": "ReST-EM"}.get(self.algorithm, self.algorithm)


def read_run(path: str, step_labels: StepLabels | None) -> RunCurve:
    """One run's curve; fails naming `eval.self_train_runs` when `path` is not a finished-enough run."""
    if not replay.exists(f"{path}/config.json") or not replay.exists(f"{path}/metrics.jsonl"):
        raise FileNotFoundError(f"eval.self_train_runs: {path!r} holds no config.json and metrics.jsonl; "
                                "give folders written by jobs/self_train.py")
    algorithm = json.loads(replay.read_text(f"{path}/config.json"))["loop"]["algorithm"]
    state = RunState.open(path)
    points = []
    for record in state.records:
        if record["phase"] != "evaluate":
            continue
        i = record["iteration"]
        search = state.get(i, "search") if i > 0 and state.done(i, "search") else {}
        data = f"{path}/iter_{i}/policy_data.parquet"
        traces = replay.read_traces(data) if i > 0 and replay.exists(data) else []
        points.append(IterationPoint(
            iteration=i,
            accuracy=record["accuracy"],
            heldout_accuracy=record.get("heldout_accuracy"),
            search_tokens=search.get("avg_tokens", 0.0),
            policy_samples=len(traces),
            false_positive_rate=false_positive_rate(traces, step_labels) if traces and step_labels else None,
        ))
    if not points:
        raise ValueError(f"eval.self_train_runs: {path!r} has no finished evaluate phase yet")
    return RunCurve(path, algorithm, tuple(sorted(points, key=lambda p: p.iteration)))


def false_positive_rate(traces: Sequence[replay.Trace], step_labels: StepLabels) -> float:
    """Among outcome-correct traces, the fraction with at least one step the true labels reject."""
    right = [t for t in traces if t.correct]
    flawed = sum(not all(step_labels(t.question, t.steps)) for t in right)
    return flawed / len(right) if right else 0.0
