"""The evaluation run: one set of inference servers, every comparison, one report.

    text = evaluate(cfg, "runs/eval", command="python jobs/evaluate.py ...")

Order: read the self-training runs named in `eval.self_train_runs` (so a wrong path fails before
any search), draw the held-out splits (one per `eval.difficulties` entry), start the servers on
`model.policy` / `model.prm`, run the equal-budget grid on every split, then again with the
models of `eval.curve_iterations` of the first ReST-MCTS* run (weights synced into the same
servers), then the PRM-quality comparison (`eval.prm_quality`) on the bootstrap models, then
write the report. Every stage keeps its outputs under DIR, so a rerun after a crash picks up
where it stopped.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from restmcts import storage
from restmcts.config import Config, ConfigError
from restmcts.evaluation.grid import Measured, run_grid
from restmcts.evaluation.runs import RunCurve, read_run
from restmcts.tasks import Question, Task, task_for
from restmcts.weights import Version


@dataclass(frozen=True)
class ModelSet:
    label: str  # results.csv's `models`
    policy: str
    prm: str
    strategies: tuple[str, ...]


def evaluate(cfg: Config, out: str, command: str) -> str:
    from restmcts.actors.runtime import init_ray
    from restmcts.actors.servers import start_servers
    from restmcts.evaluation.prm_quality import run_prm_quality
    from restmcts.evaluation.report import write_report

    start = time.time()
    task = task_for(cfg)
    labels = getattr(task, "step_labels", None)
    runs = [read_run(path, labels) for path in cfg.eval.self_train_runs]
    splits = heldout_splits(cfg, task)
    model_sets = [ModelSet("bootstrap", cfg.model.policy, cfg.model.prm, cfg.eval.strategies), *curve_models(cfg, runs)]
    finals = final_models(runs, model_sets)
    model_sets += [ms for ms in finals.values() if ms not in model_sets]
    init_ray(cfg.ray)
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm, record=f"{out}/weights.json")
    loaded = ["bootstrap"]

    def load(ms: ModelSet) -> None:
        if loaded[0] != ms.label:
            print(f"[evaluate] loading the {ms.label} models ({ms.policy}, {ms.prm})", file=sys.stderr)
            n = model_sets.index(ms)  # a model set's version number in the record
            servers.load("policy", Version(n, ms.policy))
            servers.load("prm", Version(n, ms.prm))
            loaded[0] = ms.label

    try:
        grid: list[Measured] = []
        for ms in model_sets:
            for difficulty, questions in splits:
                print(f"[evaluate] {ms.label} models, {difficulty}: {len(questions)} held-out questions",
                      file=sys.stderr)
                grid += run_grid(cfg, servers, questions, out, ms.label, difficulty, ms.strategies,
                                 prepare=lambda ms=ms: load(ms))
        load(model_sets[0])
        prm = None
        if cfg.eval.prm_quality:
            print("[evaluate] PRM quality: MCTS* values against Monte Carlo labels", file=sys.stderr)
            difficulty, questions = splits[0]
            judged = questions[: cfg.eval.prm_test_questions or len(questions)]
            samples = f"{out}/grid/bootstrap/{difficulty}/samples-{cfg.eval.max_samples}.parquet"
            reuse = samples if storage.exists(samples) and cfg.eval.max_samples >= cfg.eval.prm_samples else None
            prm = run_prm_quality(cfg, servers, task, task.questions("train"), judged, out, reuse)
    finally:
        servers.shutdown()
    return write_report(out, cfg, grid, runs, prm, command, time.time() - start,
                        {path: ms.label for path, ms in finals.items()})


def heldout_splits(cfg: Config, task: Task) -> list[tuple[str, list[Question]]]:
    """(difficulty label, questions) per `eval.difficulties` entry; without any, the configured test
    split ("test"), topped up past it where the task can draw more (arith)."""
    size = cfg.eval.num_test or cfg.data.num_test
    held_out = getattr(task, "held_out", None)
    if not cfg.eval.difficulties:
        if held_out is not None and size:
            return [("test", held_out(None, size))]
        return [("test", task.questions("test", size))]
    if held_out is None:
        raise ConfigError(f"eval.difficulties: task {cfg.data.task!r} has no difficulty levels (arith only); "
                          "leave eval.difficulties empty to use its test split")
    if not size:
        raise ConfigError("eval.num_test: with eval.difficulties, give a number of questions (0 means all "
                          "of a fixed split, and a difficulty split has no fixed size)")
    exclude = _bootstrap_texts(cfg)
    return [(str(d), held_out(d, size, exclude=exclude)) for d in cfg.eval.difficulties]


def _bootstrap_texts(cfg: Config) -> set[str]:
    """The bootstrap's own easier questions (restmcts.bootstrap draws them from a task of its own),
    so that no held-out question is one the bootstrap models learned."""
    from restmcts.bootstrap.arith import own_problems

    return {p.text for p in own_problems(cfg)}


def curve_models(cfg: Config, runs: Sequence[RunCurve]) -> list[ModelSet]:
    """The models of `eval.curve_iterations` of the first ReST-MCTS* run (no ToT: the paper's
    iteration curves are MCTS* and the sampling baselines). Iteration 0 is the run's starting
    models, left out where they are model.policy / model.prm (the bootstrap rows are the same)."""
    run = next((r for r in runs if r.algorithm == "rest_mcts"), None)
    if run is None or not cfg.eval.curve_iterations:
        return []
    strategies = tuple(s for s in cfg.eval.strategies if s != "tot")
    out = []
    for i in cfg.eval.curve_iterations:
        policy, prm = run.models_at(i)
        if i == 0 and _same(policy, cfg.model.policy) and _same(prm, cfg.model.prm):
            continue
        for path in (policy, prm):
            if not storage.exists(f"{path}/config.json"):
                raise ConfigError(f"eval.curve_iterations: iteration {i} of {run.path!r} has no model at {path!r}; "
                                  "list only iterations the run finished")
        out.append(ModelSet(f"iter_{i}", policy, prm, strategies))
    return out


def final_models(runs: Sequence[RunCurve], known: Sequence[ModelSet]) -> dict[str, ModelSet]:
    """Per self-training run, its last iteration's models for greedy CoT on every held-out split
    (ReST-MCTS* against ReST-EM at each difficulty); a model set already evaluated is reused."""
    out = {}
    for r in runs:
        k = r.points[-1].iteration
        if k == 0:
            continue
        policy, prm = r.models_at(k)
        same = next((ms for ms in [*known, *out.values()] if _same(ms.policy, policy) and _same(ms.prm, prm)), None)
        if same is None:
            taken = {ms.label for ms in [*known, *out.values()]}
            label = base = f"{r.algorithm}-seed{r.seed}-iter_{k}"
            while label in taken:
                label = f"{base}-{len(taken)}"
                taken.add(label)
            same = ModelSet(label, policy, prm, ("cot",))
        out[r.path] = same
    return out


def _same(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)
