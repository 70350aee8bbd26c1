"""Self-training runs side by side (the paper's Table 2 in miniature), read from their folders.

For each `jobs/self_train.py` output folder: held-out accuracy per iteration (iteration 0 is
the bootstrap models), what the search spent per question, how much policy data it kept, and,
where the task knows the true per-step labels (arith), the false-positive rate of that policy
data: the fraction of outcome-correct traces that contain a wrong step. Each iteration's
per-question scores (the loop's `iter_<i>/eval_traces.parquet`, chosen rows) give its 95%
bootstrap interval and pair two runs of the same seed (same held-out questions) in a test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from restmcts import replay, storage
from restmcts.evaluation.stats import bootstrap_ci
from restmcts.loop.algorithms import title
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
    ci_low: float | None = None  # 95% bootstrap interval of `accuracy` over the held-out questions
    ci_high: float | None = None
    scores: tuple[float, ...] = ()  # per held-out question (the run's test split order): 1 right, 0 wrong


@dataclass(frozen=True)
class RunCurve:
    path: str
    algorithm: str  # loop.algorithm of the run: rest_mcts or rest_em
    points: tuple[IterationPoint, ...]
    seed: int = 0  # loop.seed: with the same seed two runs share their held-out questions
    start_models: tuple[str, str] = ("", "")  # the run's model.policy and model.prm (iteration 0)

    def models_at(self, iteration: int) -> tuple[str, str]:
        """(policy, PRM) after `iteration`: its own checkpoints, the latest PRM trained up to it
        (ReST-EM trains none), the run's starting models at iteration 0."""
        policy = f"{self.path}/iter_{iteration}/policy" if iteration > 0 else self.start_models[0]
        prm = next((f"{self.path}/iter_{j}/prm" for j in range(iteration, 0, -1)
                    if storage.exists(f"{self.path}/iter_{j}/prm/config.json")), self.start_models[1])
        return policy, prm

    @property
    def label(self) -> str:
        return title(self.algorithm)


def read_run(path: str, step_labels: StepLabels | None) -> RunCurve:
    """One run's curve; fails naming `eval.self_train_runs` when `path` is not a finished-enough run."""
    if not storage.exists(f"{path}/config.json") or not storage.exists(f"{path}/metrics.jsonl"):
        raise FileNotFoundError(f"eval.self_train_runs: {path!r} holds no config.json and metrics.jsonl; "
                                "give folders written by jobs/self_train.py")
    run_cfg = json.loads(storage.read_text(f"{path}/config.json"))
    algorithm = run_cfg["loop"]["algorithm"]
    ids = _test_ids(run_cfg)
    state = RunState.open(path)
    points = []
    for record in state.of_phase("evaluate"):
        i, evaluation = record.iteration, record.stats
        search = state.get(i, "search").stats if i > 0 and state.done(i, "search") else None
        data = f"{path}/iter_{i}/policy_data.parquet"
        traces = replay.read_traces(data) if i > 0 and storage.exists(data) else []
        scores = _scores(f"{path}/iter_{i}/eval_traces.parquet", ids, evaluation.questions)
        low, high = bootstrap_ci(scores) if scores else (None, None)
        points.append(IterationPoint(
            iteration=i,
            accuracy=evaluation.accuracy,
            heldout_accuracy=evaluation.heldout_accuracy,
            search_tokens=search.avg_tokens if search else 0.0,
            policy_samples=len(traces),
            false_positive_rate=false_positive_rate(traces, step_labels) if traces and step_labels else None,
            ci_low=low, ci_high=high, scores=tuple(scores),
        ))
    if not points:
        raise ValueError(f"eval.self_train_runs: {path!r} has no finished evaluate phase yet")
    return RunCurve(path, algorithm, tuple(sorted(points, key=lambda p: p.iteration)), int(run_cfg["loop"]["seed"]),
                    (run_cfg["model"]["policy"], run_cfg["model"]["prm"]))


def _test_ids(run_cfg: dict[str, Any]) -> list[str] | None:
    """The run's held-out question ids, in order (None where its task cannot list them here,
    e.g. a dataset file that is not on this machine)."""
    from restmcts.config import from_dict
    from restmcts.tasks import task_for

    try:
        cfg = from_dict(run_cfg)
        return [q.id for q in task_for(cfg).questions("test", cfg.data.num_test)]
    except Exception:  # noqa: BLE001 - the run's curve is still readable without pairing
        return None


def _scores(path: str, ids: list[str] | None, questions: int | None) -> list[float]:
    """Per held-out question, 1.0 when the loop's evaluation chose a correct answer. Without the
    ids, the questions seen in the traces in id order, padded with wrong answers up to the pass's
    count (enough for an interval; pairs with another run only where both saw the same questions)."""
    if not storage.exists(path):
        return []
    traces = replay.read_traces(path)
    right = {t.question_id for t in traces if t.chosen and t.correct}
    if ids is None:
        seen = sorted({t.question_id for t in traces})
        return [1.0 if q in right else 0.0 for q in seen] + [0.0] * max(0, (questions or 0) - len(seen))
    return [1.0 if q in right else 0.0 for q in ids]


def false_positive_rate(traces: Sequence[replay.Trace], step_labels: StepLabels) -> float:
    """Among outcome-correct traces, the fraction with at least one step the true labels reject."""
    right = [t for t in traces if t.correct]
    flawed = sum(not all(step_labels(t.question, t.steps)) for t in right)
    return flawed / len(right) if right else 0.0
