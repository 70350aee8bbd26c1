"""PRM quality: values inferred by MCTS* against Math-Shepherd Monte Carlo labels, same budget.

1. label    MCTS* searches `eval.prm_questions` training questions with the data-generation
            settings; its inferred (Q, p, v) samples are one training set and the policy tokens
            it spent are the budget. Monte Carlo labelling (restmcts.search.montecarlo) then works
            through the same questions, in order, until it has spent at least that many tokens.
2. train    two PRMs from the policy's backbone (a fresh value head), one per label set, with the
            same learners, learning rate and `eval.prm_epochs`.
3. judge    `eval.prm_samples` solutions per held-out question (the first `eval.prm_test_questions`
            of the grid's first split), sampled once: the first chains of the grid's sampling pass
            where it drew enough, else a pass of their own. Each PRM (and the bootstrap PRM the
            loop starts from) is loaded into the live PRM server and scores every prefix.
            Reported, as the paper's Table 3: PRM-weighted self-consistency (SC + PRM) and PRM
            best-of-N at N = 4, 16, 64 (up to `eval.prm_samples`; a solution scored by its
            minimum prefix value, each N the first N solutions of a question); at all samples also
            with the last prefix's value; and, secondary, per-step AUROC against the task's true
            step labels (arith; None for tasks without them), pooled and within each depth. The
            bootstrap PRM is scored from model.prm; the last PRM judged stays loaded
            (jobs/evaluate.py shuts the servers down next).

Every stage writes its output under `DIR/prm/` and a rerun reuses what is there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from restmcts import replay, storage
from restmcts.config import Config
from restmcts.evaluation.sampling import weighted_vote
from restmcts.replay import Trace, ValueRecord
from restmcts.search.baselines import highest_value
from restmcts.tasks import Question

if TYPE_CHECKING:
    from restmcts.actors.client import ModelClient
    from restmcts.actors.servers import Servers


@dataclass(frozen=True)
class PRMQuality:
    name: str  # bootstrap | mcts_values | monte_carlo
    labels: str  # where its training labels came from
    train_questions: int
    train_samples: int
    label_tokens: int  # policy tokens spent making its labels (0: not measured here)
    auroc: float | None  # per-step, against the true step labels
    weighted_sc_accuracy: float  # votes weighted by the solution's min-prefix value
    best_of_n_accuracy: float  # the solution with the highest min-prefix value
    # Per-step AUROC among steps at the same depth (mean over depths, weighted by steps): a PRM
    # whose values grow with depth (MCTS* values measure progress) is not penalised for it here.
    depth_auroc: float | None = None
    # Solutions scored by their last prefix's value (the whole trace's v, as MCTS* ranks them)
    # instead of the minimum over prefixes (Math-Shepherd).
    weighted_sc_last_accuracy: float | None = None
    best_of_n_last_accuracy: float | None = None
    # The paper's Table 3: (N, SC + PRM accuracy, best-of-N accuracy) over the first N solutions of
    # each question, min-prefix scoring, for N in TABLE_N up to eval.prm_samples.
    by_n: tuple[tuple[int, float, float], ...] = ()


TABLE_N = (4, 16, 64)


@dataclass(frozen=True)
class HeldOut:
    questions: int
    solutions: int
    steps: int  # scored prefixes with a true label
    positive_fraction: float | None  # of those prefixes, the right ones
    sc_accuracy: float  # plain majority vote over the same solutions


def run_prm_quality(cfg: Config, servers: Servers, task: Any, train: list[Question], test: list[Question],
                    out: str, samples: str | None = None,
                    ) -> tuple[list[PRMQuality], HeldOut, dict[tuple[str, str], list[float]]]:
    """The PRMs judged on `test`; `samples`: a traces file with at least eval.prm_samples chains
    per question to judge them on (the grid's sampling pass). Also returns per-question scores
    at all samples, keyed (PRM name, "sc_prm" | "bon"), for paired tests."""
    d = f"{out}/prm"
    mcts = _mcts_values(cfg, servers, train[: cfg.eval.prm_questions], d)
    mc = _monte_carlo_values(cfg, servers, task, train, mcts["tokens"], d)
    trained = {name: _train(cfg, name, f"{d}/{name}.parquet", f"{d}/{name}") for name in ("mcts_values", "monte_carlo")}
    solutions = _heldout_solutions(cfg, servers, test, d, samples)
    checkpoints = {"bootstrap": cfg.model.prm, **trained}
    sources = {"bootstrap": "the PRM the loop starts from (model.prm)",
               "mcts_values": "values inferred from MCTS* trees", "monte_carlo": "Monte Carlo rollout labels"}
    spent = {"mcts_values": mcts, "monte_carlo": mc}
    labels = getattr(task, "step_labels", None)
    truth = [labels(t.question, t.steps) for t in solutions] if labels else None  # per solution, per step
    ids = [q.id for q in test]
    sizes = [n for n in TABLE_N if n < cfg.eval.prm_samples] + [cfg.eval.prm_samples]
    rows, per_question = [], {}
    for name, path in checkpoints.items():
        scores = _score_all(cfg, servers, path, solutions)
        by_n = tuple((n, _mean(_pick_scores(solutions, scores, weighted_vote, ids, n)),
                      _mean(_pick_scores(solutions, scores, highest_value, ids, n))) for n in sizes)
        per_question[(name, "sc_prm")] = _pick_scores(solutions, scores, weighted_vote, ids)
        per_question[(name, "bon")] = _pick_scores(solutions, scores, highest_value, ids)
        rows.append(PRMQuality(
            name=name, labels=sources[name],
            train_questions=spent.get(name, {}).get("questions", 0),
            train_samples=len(replay.read_values(f"{d}/{name}.parquet")) if name in spent else 0,
            label_tokens=spent.get(name, {}).get("tokens", 0),
            auroc=_auroc(scores, truth) if truth is not None else None,
            weighted_sc_accuracy=_pick_accuracy(solutions, scores, weighted_vote, len(test)),
            best_of_n_accuracy=_pick_accuracy(solutions, scores, highest_value, len(test)),
            depth_auroc=_depth_auroc(scores, truth) if truth is not None else None,
            weighted_sc_last_accuracy=_pick_accuracy(solutions, scores, weighted_vote, len(test), last=True),
            best_of_n_last_accuracy=_pick_accuracy(solutions, scores, highest_value, len(test), last=True),
            by_n=by_n,
        ))
    step_truth = [ok for oks in truth for ok in oks] if truth is not None else []
    unweighted = [[1.0] * len(t.steps) for t in solutions]
    held = HeldOut(len(test), len(solutions), len(step_truth),
                   sum(step_truth) / len(step_truth) if step_truth else None,
                   _pick_accuracy(solutions, unweighted, weighted_vote, len(test)))
    return rows, held, per_question


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


# --------------------------------------------------------------------------- label


def _mcts_values(cfg: Config, servers: Servers, questions: list[Question], d: str) -> dict[str, int]:
    from restmcts.actors.search_pass import run_pass

    done = f"{d}/mcts_values.json"
    if not storage.exists(done):
        search_cfg = dataclasses.replace(cfg.search.settings(), strategy="mcts_star")
        summary = run_pass(cfg, servers, questions, search_cfg, 0, d, traces_name="mcts_traces.parquet",
                           values_name="mcts_values.parquet", label="prm labels: MCTS*")
        storage.write_text(done, json.dumps({"questions": summary.questions, "tokens": summary.tokens}))
    return json.loads(storage.read_text(done))


def _monte_carlo_values(cfg: Config, servers: Servers, task: Any, questions: list[Question], budget: int,
                        d: str, chunk: int = 16) -> dict[str, int]:
    """Label questions in order, `chunk` at a time, until `budget` policy tokens are spent."""
    done = f"{d}/monte_carlo.json"
    if not storage.exists(done):
        records: list[ValueRecord] = []
        tokens = used = 0
        while tokens < budget and used < len(questions):
            batch = questions[used:used + chunk]
            for rows, spent in asyncio.run(_label(cfg, servers, task, batch)):
                records += rows
                tokens += spent
            used += len(batch)
            print(f"[evaluate] Monte Carlo labels: {used} questions, {tokens:,} of {budget:,} tokens", flush=True)
        replay.write_records(records, ValueRecord, f"{d}/monte_carlo.parquet")
        storage.write_text(done, json.dumps({"questions": used, "tokens": tokens}))
    return json.loads(storage.read_text(done))


async def _label(cfg: Config, servers: Servers, task: Any, questions: list[Question]) -> list[tuple[list[ValueRecord], int]]:
    from restmcts.bootstrap.labels import label_question
    from restmcts.search import derive_seed

    client, settings = _client(cfg, servers), cfg.search.settings()
    return list(await asyncio.gather(*(
        label_question(client, task, q, settings, derive_seed(cfg.search.seed, "mc", q.id), cfg.eval.prm_rollouts)
        for q in questions)))


# --------------------------------------------------------------------------- train


def _train(cfg: Config, name: str, data: str, path: str) -> str:
    from restmcts.learners import train_phase

    if not storage.exists(f"{path}/config.json"):
        prm_cfg = cfg.replace(f"learners.prm_epochs={cfg.eval.prm_epochs}")
        print(f"[evaluate] training the {name} PRM from {cfg.model.policy}", flush=True)
        train_phase(prm_cfg, "prm", cfg.model.policy, [data], path)
    return path


# --------------------------------------------------------------------------- judge


def _heldout_solutions(cfg: Config, servers: Servers, test: list[Question], d: str,
                       samples: str | None = None) -> list[Trace]:
    """The first eval.prm_samples solutions of each of `test`'s questions, in the order drawn."""
    from restmcts.actors.search_pass import run_pass
    from restmcts.config import evaluation_search
    from restmcts.evaluation.grid import search_config

    path = samples or f"{d}/heldout_solutions.parquet"
    if not storage.exists(path):
        search_cfg = search_config(evaluation_search(cfg), "sc", cfg.eval.prm_samples)
        run_pass(cfg, servers, test, search_cfg, 0, d, traces_name="heldout_solutions.parquet", values_name=None,
                 label="prm held-out solutions")
    wanted = {q.id for q in test}
    kept: dict[str, int] = defaultdict(int)
    out = []
    for t in replay.read_traces(path):
        if t.question_id in wanted and t.steps and kept[t.question_id] < cfg.eval.prm_samples:
            kept[t.question_id] += 1
            out.append(t)
    return out


def _score_all(cfg: Config, servers: Servers, prm_path: str, solutions: list[Trace]) -> list[list[float]]:
    """Every prefix of every solution, scored by the PRM server after loading `prm_path`'s weights
    (a prefix that several of a question's solutions share is scored once: restmcts.search.calls)."""
    from restmcts.search import Models
    from restmcts.search.calls import Calls
    from restmcts.weights import Version

    servers.load("prm", Version(0, prm_path))

    async def score() -> list[list[float]]:
        client = _client(cfg, servers)
        models = Models(client.propose, client.score)
        per_question: dict[str, Calls] = {}
        # Enough calls in flight to fill the servers' queues, not one per solution (12,800 at the
        # default: Ray warns past 5,000 pending calls to one actor and holds each in memory).
        slots = asyncio.Semaphore(cfg.servers.max_queue * cfg.servers.prm_replicas)

        async def one(t: Trace) -> list[float]:
            calls = per_question.setdefault(t.question_id, Calls(models, t.question))
            async with slots:
                return await calls.score([t.steps[:k] for k in range(1, len(t.steps) + 1)])

        return list(await asyncio.gather(*map(one, solutions)))

    return asyncio.run(score())


def _client(cfg: Config, servers: Servers) -> ModelClient:
    from restmcts.actors.client import ModelClient

    return ModelClient.from_config(cfg, servers.policy, servers.prm)


def _auroc(scores: Sequence[Sequence[float]], truth: Sequence[Sequence[bool]]) -> float:
    """Per-step AUROC of every solution's prefix scores against its true step labels."""
    from restmcts.evaluation.stats import auroc

    return auroc([v for vs in scores for v in vs], [ok for oks in truth for ok in oks])


def _depth_auroc(scores: Sequence[Sequence[float]], truth: Sequence[Sequence[bool]]) -> float | None:
    """AUROC within each step depth, averaged with the depth's step count as weight (depths
    where every step is right, or every step wrong, are left out); None when none is left."""
    from restmcts.evaluation.stats import auroc

    by_depth: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for vs, oks in zip(scores, truth, strict=True):
        for k, (v, ok) in enumerate(zip(vs, oks, strict=True)):
            by_depth[k].append((v, ok))
    mixed = [pairs for pairs in by_depth.values() if 0 < sum(ok for _, ok in pairs) < len(pairs)]
    if not mixed:
        return None
    total = sum(len(pairs) for pairs in mixed)
    return sum(len(pairs) * auroc([v for v, _ in pairs], [ok for _, ok in pairs]) for pairs in mixed) / total


Pick = Callable[[list[tuple[Trace, float]]], Trace]


def _pick_accuracy(solutions: Sequence[Trace], scores: Sequence[Sequence[float]], pick: Pick,
                   n_questions: int, last: bool = False) -> float:
    """Accuracy over `n_questions` held-out questions when `pick` chooses among each question's
    solutions that state an answer (value: min over prefixes, or the last prefix's with `last`);
    a question with none counts wrong."""
    right = sum(pick(c).correct for c in _candidates(solutions, scores, last).values())
    return right / n_questions if n_questions else 0.0


def _pick_scores(solutions: Sequence[Trace], scores: Sequence[Sequence[float]], pick: Pick,
                 question_ids: Sequence[str], n: int | None = None, last: bool = False) -> list[float]:
    """Per question in `question_ids`: 1.0 when `pick` over its first `n` solutions (all: None)
    chooses a correct one; a question without an answered solution among them scores 0."""
    firsts: list[Trace] = []
    kept: dict[str, int] = defaultdict(int)
    chosen_scores = []
    for t, vs in zip(solutions, scores, strict=True):
        if n is None or kept[t.question_id] < n:
            kept[t.question_id] += 1
            firsts.append(t)
            chosen_scores.append(vs)
    by_question = _candidates(firsts, chosen_scores, last)
    return [1.0 if q in by_question and pick(by_question[q]).correct else 0.0 for q in question_ids]


def _candidates(solutions: Sequence[Trace], scores: Sequence[Sequence[float]],
                last: bool) -> dict[str, list[tuple[Trace, float]]]:
    by_question: dict[str, list[tuple[Trace, float]]] = defaultdict(list)
    for t, vs in zip(solutions, scores, strict=True):
        if t.answer is not None:
            by_question[t.question_id].append((t, vs[-1] if last else min(vs)))
    return by_question
