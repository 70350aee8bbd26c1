"""One search pass: stream questions to SearchWorker actors and write the replay exactly once.

    summary = run_pass(cfg, servers, questions, search_cfg, iteration, out_dir)

Questions go to workers in chunks; each worker keeps enough chunks queued that
`trees_per_worker` trees stay in flight, and is refilled as chunks finish. A finished chunk is
written at once as a shard (values, then traces, then a done marker, each atomic). A rerun
after a crash skips every question with a done marker and drops unmarked shards, so no row is
lost or duplicated; a chunk whose worker died is resubmitted and counted as a retry. When all
questions are done the shards are merged, in question order, into `traces.parquet` and
`values.parquet`, and the shard folder is removed.

Why not Ray Data `map_batches`: this stage needs per-question exactly-once output that survives
a driver crash mid-pass (durable shards keyed by question ids), continuous refill so a worker
never idles at a block boundary (async batch UDFs run at most 4 batches per task and a task
ends with its block), and retry counts in the summary. The dispatcher below is ~100 lines; the
worker pool still autoscales through Ray's resource demand (pending actors).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from restmcts import replay
from restmcts.config import Config, SearchConfig
from restmcts.extract import QuestionOutcome
from restmcts.replay import Trace, ValueRecord
from restmcts.tasks import Question


@dataclass
class PassSummary:
    questions: int
    solved: int  # questions with at least one verified-correct solution
    answered_correctly: int  # questions whose chosen answer is correct
    tokens: int
    policy_calls: int
    prm_calls: int
    trace_rows: int
    value_rows: int
    retries: int  # chunks resubmitted after a worker died
    resumed: int  # questions found done from an earlier, interrupted run
    failures: int  # questions that ended without any terminal solution
    wall_seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # where tree-time went

    @property
    def accuracy(self) -> float:
        return self.answered_correctly / self.questions if self.questions else 0.0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "accuracy": self.accuracy,
                           "solved_fraction": self.solved / max(self.questions, 1)}, indent=2)


def _chunk_name(ids: Sequence[str]) -> str:
    return "chunk-" + hashlib.blake2b("\n".join(ids).encode(), digest_size=8).hexdigest()


class _Shards:
    """Durable per-chunk output under `<out>/.shards-<stem>/`."""

    def __init__(self, out_dir: str, stem: str):
        self.dir = f"{out_dir}/.shards-{stem}"

    def done_ids(self) -> set[str]:
        files = replay.list_dir(self.dir)
        markers = {f[: -len(".done.json")] for f in files if f.endswith(".done.json")}
        for f in files:  # shards of a chunk that never got its marker: a crash mid-write
            if not f.endswith(".done.json") and f.rsplit(".", 2)[0] not in markers:
                replay.remove(f)
        ids: set[str] = set()
        for m in markers:
            ids.update(json.loads(replay.read_text(m + ".done.json"))["question_ids"])
        return ids

    def write(self, ids: list[str], outcomes: list[QuestionOutcome], with_values: bool) -> None:
        base = f"{self.dir}/{_chunk_name(ids)}"
        if with_values:
            replay.write_records([v for o in outcomes for v in o.values], ValueRecord, base + ".values.parquet")
        replay.write_records([t for o in outcomes for t in o.traces], Trace, base + ".traces.parquet")
        stats = [asdict(o.budget) | {"question_id": o.question_id, "solved": o.solved,
                                     "answered_correctly": o.answered_correctly, "failure": o.failure}
                 for o in outcomes]
        replay.write_text(base + ".done.json", json.dumps({"question_ids": ids, "outcomes": stats}))

    def merge(self, order: list[str], traces_path: str, values_path: str | None) -> tuple[int, int, list[dict]]:
        files = replay.list_dir(self.dir)
        rank = {qid: i for i, qid in enumerate(order)}

        def load(suffix: str, cls: Any) -> list[Any]:
            rows = [r for f in files if f.endswith(suffix) for r in replay.from_table(
                replay.read_table(f, replay.TRACE_SCHEMA if cls is Trace else replay.VALUE_SCHEMA), cls)]
            return sorted(rows, key=lambda r: rank[r.question_id])  # stable: keeps in-question order

        traces = load(".traces.parquet", Trace)
        replay.write_records(traces, Trace, traces_path)
        values = []
        if values_path is not None:
            values = load(".values.parquet", ValueRecord)
            replay.write_records(values, ValueRecord, values_path)
        outcomes = [o for f in files if f.endswith(".done.json")
                    for o in json.loads(replay.read_text(f))["outcomes"]]
        return len(traces), len(values), outcomes


def run_pass(cfg: Config, servers: Any, questions: list[Question], search_cfg: SearchConfig,
             iteration: int, out_dir: str, traces_name: str = "traces.parquet",
             values_name: str | None = "values.parquet", label: str = "search") -> PassSummary:
    """Search every question once; write `out_dir/traces_name` (and `values_name`)."""
    import ray

    from restmcts.actors.search_worker import SearchWorker

    start = time.time()
    shards = _Shards(out_dir, traces_name.removesuffix(".parquet"))
    done = shards.done_ids()
    todo = deque(q for q in questions if q.id not in done)
    resumed = len(questions) - len(todo)
    chunk = max(1, search_cfg.trees_per_worker // 4)
    per_worker = -(-search_cfg.trees_per_worker // chunk) + 1  # chunks queued on each worker
    num_workers = max(1, min(search_cfg.num_workers, -(-len(todo) // chunk)))
    workers = [SearchWorker.options(num_cpus=search_cfg.worker_cpus).remote(
        cfg, servers.policy, servers.prm, f"worker-{i}") for i in range(num_workers)] if todo else []
    pending: dict[Any, tuple[int, list[Question]]] = {}
    chunks = deque(list(todo)[i:i + chunk] for i in range(0, len(todo), chunk))
    retries, finished, tokens = 0, resumed, 0
    last_print = 0.0

    def submit(w: int) -> None:
        while chunks and sum(1 for ww, _ in pending.values() if ww == w) < per_worker:
            qs = chunks.popleft()
            pending[workers[w].run.remote(qs, search_cfg, iteration)] = (w, qs)

    for w in range(len(workers)):
        submit(w)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            w, qs = pending.pop(ref)
            try:
                outcomes = ray.get(ref)
            except ray.exceptions.RayActorError:
                retries += 1
                chunks.appendleft(qs)
            else:
                shards.write([q.id for q in qs], outcomes, values_name is not None)
                finished += len(qs)
                tokens += sum(o.budget.tokens for o in outcomes)
            submit(w)
        if time.time() - last_print > 2.0 or not pending:
            last_print = time.time()
            rate = tokens / max(time.time() - start, 1e-9)
            in_flight = min(sum(len(qs) for _, qs in pending.values()),
                            len(workers) * search_cfg.trees_per_worker)
            print(f"\r[{label}] {finished}/{len(questions)} questions | {in_flight} trees in flight | "
                  f"{rate:,.0f} tok/s | retries {retries}", end="" if pending else "\n",
                  file=sys.stderr, flush=True)

    phases = _phase_times(workers)
    for w in workers:
        ray.kill(w)
    values_path = f"{out_dir}/{values_name}" if values_name is not None else None
    trace_rows, value_rows, outcomes = shards.merge([q.id for q in questions], f"{out_dir}/{traces_name}",
                                                    values_path)
    replay.remove(shards.dir)
    return PassSummary(
        questions=len(questions),
        solved=sum(o["solved"] for o in outcomes),
        answered_correctly=sum(o["answered_correctly"] for o in outcomes),
        tokens=sum(o["tokens"] for o in outcomes),
        policy_calls=sum(o["policy_calls"] for o in outcomes),
        prm_calls=sum(o["prm_calls"] for o in outcomes),
        trace_rows=trace_rows,
        value_rows=value_rows,
        retries=retries,
        resumed=resumed,
        failures=sum(o["failure"] is not None for o in outcomes),
        wall_seconds=time.time() - start,
        phases=phases,
    )


def _phase_times(workers: list[Any]) -> dict[str, float]:
    """Tree-seconds by phase, summed over workers (a dead worker's share is lost)."""
    import ray

    totals = {"policy_wait": 0.0, "prm_wait": 0.0, "tree_ops": 0.0, "judge": 0.0}
    for w in workers:
        try:
            s = ray.get(w.stats.remote(), timeout=10)
        except Exception:
            continue
        totals["policy_wait"] += s.client.policy_seconds
        totals["prm_wait"] += s.client.prm_seconds
        totals["tree_ops"] += max(0.0, s.search_seconds - s.client.policy_seconds - s.client.prm_seconds)
        totals["judge"] += s.judge_seconds
    return totals
