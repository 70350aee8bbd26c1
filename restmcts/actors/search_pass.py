"""One search pass: stream questions to SearchWorker actors and write the replay exactly once.

    summary = run_pass(cfg, servers, questions, settings, iteration, out_dir)

`settings` are the trees' parameters (restmcts.config.SearchSettings: `cfg.search.settings()` for
data generation, `evaluation_search(cfg)` for an evaluation), and every chunk sent to a worker
carries them; how the pass runs (workers, resources, trees in flight, tree export) comes from
`cfg.search`. Questions go to workers in chunks; each worker keeps enough chunks queued that
`trees_per_worker` trees stay in flight, and is refilled as chunks finish. A finished chunk is
written at once as a shard (values, then traces, then a done marker, each atomic). A rerun
after a crash skips every question with a done marker and drops unmarked shards, so no row is
lost or duplicated; a chunk whose worker died is resubmitted and counted as a retry. When all
questions are done the shards are merged, in question order, into `traces.parquet` and
`values.parquet`, and the shard folder is removed.

With `search.export_trees: N` the trees of the pass's first N questions (MCTS* only: other
strategies grow no tree) are written as JSON to `OUT/trees/<question_id>.json`
(restmcts.replay.extract.export_tree; `python -m restmcts.viewer` draws one). A chunk's trees are
written before its done marker, so a resumed pass still has every tree it exported.
Progress goes to stderr through restmcts.progress: a bar on a terminal, complete lines in a log.

Why not Ray Data `map_batches`: this stage needs per-question exactly-once output that survives
a driver crash mid-pass (durable shards keyed by question ids), continuous refill so a worker
never idles at a block boundary (async batch UDFs run at most 4 batches per task and a task
ends with its block), and retry counts in the summary. The dispatcher below is ~100 lines; the
worker pool still autoscales through Ray's resource demand (pending actors, see WorkerPool):
`search.num_workers` workers are requested, the pass starts once `search.min_workers` run, and
each later one takes chunks as the cluster places it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from restmcts import replay, storage
from restmcts.config import Config, SearchSettings
from restmcts.progress import progress
from restmcts.replay import Trace, ValueRecord
from restmcts.replay.extract import QuestionOutcome
from restmcts.tasks import Question

if TYPE_CHECKING:
    from restmcts.actors.servers import Servers


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
    worker_peak_rss_mb: float = 0.0  # the largest peak resident memory of a search worker
    wasted_tokens: int = 0  # policy tokens of samples dropped as empty or duplicate (inside `tokens`)
    finished: int = 0  # nodes whose answer a greedy completion read (fallback answers, self-critic ends)
    bad_scores: int = 0  # PRM outputs that were NaN/inf (scored 0) or outside [0, 1] (clipped)

    @property
    def accuracy(self) -> float:
        return self.answered_correctly / self.questions if self.questions else 0.0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "accuracy": self.accuracy,
                           "solved_fraction": self.solved / max(self.questions, 1)}, indent=2)


def _chunk_name(ids: Sequence[str]) -> str:
    return "chunk-" + hashlib.blake2b("\n".join(ids).encode(), digest_size=8).hexdigest()


def tree_dir(out_dir: str, traces_name: str = "traces.parquet") -> str:
    """Where a pass writes its exported trees: `OUT/trees/` for the main replay, and
    `OUT/trees-<stem>/` for a pass writing another traces file (evaluation, grid points)."""
    stem = traces_name.removesuffix(".parquet")
    return f"{out_dir}/trees" if stem == "traces" else f"{out_dir}/trees-{stem}"


def tree_file(trees: str, question_id: str) -> str:
    """`<trees>/<question_id>.json`, characters a file name should not hold replaced by `_`."""
    return f"{trees}/{re.sub(r'[^A-Za-z0-9._-]', '_', question_id)}.json"


def checkpoints_path(out_dir: str, traces_name: str = "traces.parquet") -> str:
    """Where a pass with `search.record_at` (anytime MCTS*) writes its checkpoints: JSON lines,
    one per question and count, `{"question_id", **restmcts.search.Checkpoint}` (`best` a Solution
    dict with `correct` judged, or null), in question order then `at` order."""
    return f"{out_dir}/{traces_name.removesuffix('.parquet')}.checkpoints.jsonl"


def write_checkpoints(path: str, order: Sequence[str], outcomes: Sequence[dict[str, Any]]) -> None:
    """The merged outcomes' checkpoint rows (none recorded: no file)."""
    rank = {qid: i for i, qid in enumerate(order)}
    rows = [{"question_id": o["question_id"], **c} for o in sorted(outcomes, key=lambda o: rank[o["question_id"]])
            for c in o.get("checkpoints", [])]
    if rows:
        storage.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def write_trees(trees: str, outcomes: Sequence[QuestionOutcome]) -> None:
    """Write each outcome's exported tree (restmcts.replay.extract.export_tree), one atomic file each."""
    for o in outcomes:
        if o.tree is not None:
            storage.write_text(tree_file(trees, o.question_id), json.dumps(o.tree, indent=1))


class _Shards:
    """Durable per-chunk output under `<out>/.shards-<stem>/`."""

    def __init__(self, out_dir: str, stem: str):
        self.dir = f"{out_dir}/.shards-{stem}"

    def done_ids(self) -> set[str]:
        files = storage.list_dir(self.dir)
        markers = {f[: -len(".done.json")] for f in files if f.endswith(".done.json")}
        for f in files:  # shards of a chunk that never got its marker: a crash mid-write
            if not f.endswith(".done.json") and f.rsplit(".", 2)[0] not in markers:
                storage.remove(f)
        ids: set[str] = set()
        for m in markers:
            ids.update(json.loads(storage.read_text(m + ".done.json"))["question_ids"])
        return ids

    def write(self, ids: list[str], outcomes: list[QuestionOutcome], with_values: bool) -> None:
        base = f"{self.dir}/{_chunk_name(ids)}"
        if with_values:
            replay.write_records([v for o in outcomes for v in o.values], ValueRecord, base + ".values.parquet")
        replay.write_records([t for o in outcomes for t in o.traces], Trace, base + ".traces.parquet")
        stats = [asdict(o.budget) | {"question_id": o.question_id, "solved": o.solved,
                                     "answered_correctly": o.answered_correctly, "failure": o.failure,
                                     "checkpoints": [asdict(c) for c in o.checkpoints]}
                 for o in outcomes]
        storage.write_text(base + ".done.json", json.dumps({"question_ids": ids, "outcomes": stats}))

    def merge(self, order: list[str], traces_path: str, values_path: str | None) -> tuple[int, int, list[dict]]:
        files = storage.list_dir(self.dir)
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
                    for o in json.loads(storage.read_text(f))["outcomes"]]
        return len(traces), len(values), outcomes


def run_pass(cfg: Config, servers: Servers, questions: list[Question], settings: SearchSettings,
             iteration: int, out_dir: str, traces_name: str = "traces.parquet",
             values_name: str | None = "values.parquet", label: str = "search",
             pool: WorkerPool | None = None) -> PassSummary:
    """Search every question once with `settings`; write `out_dir/traces_name` (and `values_name`).
    The workers receive the tree's parameters only (a `SearchConfig` given here is reduced to them).
    With `pool` (a run's rollout group, restmcts.actors.rollout) the pass uses those workers and
    leaves them running; without, it starts workers of its own and stops them at the end."""
    import ray

    settings, pass_cfg = settings.settings(), cfg.search
    start = time.time()
    shards = _Shards(out_dir, traces_name.removesuffix(".parquet"))
    done = shards.done_ids()
    todo = deque(q for q in questions if q.id not in done)
    resumed = len(questions) - len(todo)
    chunk = max(1, pass_cfg.trees_per_worker // 4)
    per_worker = -(-pass_cfg.trees_per_worker // chunk) + 1  # chunks queued on each worker
    own_pool = pool is None
    if pool is None:
        pool = WorkerPool(cfg, servers, max(1, min(pass_cfg.num_workers, -(-len(todo) // chunk))) if todo else 0)
    size = len(pool.handles)
    workers = pool.handles
    pending: dict[Any, tuple[int, list[Question]]] = {}
    chunks = deque(list(todo)[i:i + chunk] for i in range(0, len(todo), chunk))
    retries, finished, tokens = 0, resumed, 0
    export = {q.id for q in questions[:pass_cfg.export_trees]}  # the pass's first N questions
    trees = tree_dir(out_dir, traces_name)
    bar = progress(len(questions), label, unit="questions", initial=resumed)

    def submit(w: int) -> None:
        while chunks and sum(1 for ww, _ in pending.values() if ww == w) < per_worker:
            qs = chunks.popleft()
            pending[workers[w].run.remote(qs, settings, iteration, [q.id for q in qs if q.id in export])] = (w, qs)

    try:
        pool.wait_for(min(pass_cfg.min_workers, size))
        pool.begin_pass()
        for w in pool.running:
            submit(w)
        while pending:
            for w in pool.poll():  # a worker the cluster placed since: it takes chunks still queued here
                submit(w)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                w, qs = pending.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except ray.exceptions.RayActorError:
                    retries += 1
                    chunks.appendleft(qs)
                else:
                    write_trees(trees, outcomes)  # before the chunk's done marker: a resumed pass keeps them
                    shards.write([q.id for q in qs], outcomes, values_name is not None)
                    finished += len(qs)
                    tokens += sum(o.budget.tokens for o in outcomes)
                submit(w)
            in_flight = min(sum(len(qs) for _, qs in pending.values()),
                            len(pool.running) * pass_cfg.trees_per_worker)
            bar.set(finished, trees_in_flight=in_flight, workers=f"{len(pool.running)}/{size}", retries=retries,
                    **{"tok/s": f"{tokens / max(time.time() - start, 1e-9):,.0f}"})
        bar.close()
        phases, peak_rss = _phase_times([workers[w] for w in pool.running])
    finally:
        if own_pool:
            pool.shutdown()
    values_path = f"{out_dir}/{values_name}" if values_name is not None else None
    trace_rows, value_rows, outcomes = shards.merge([q.id for q in questions], f"{out_dir}/{traces_name}",
                                                    values_path)
    write_checkpoints(checkpoints_path(out_dir, traces_name), [q.id for q in questions], outcomes)
    storage.remove(shards.dir)
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
        worker_peak_rss_mb=round(peak_rss, 1),
        wasted_tokens=sum(o.get("wasted_tokens", 0) for o in outcomes),
        finished=sum(o.get("finished", 0) for o in outcomes),
        bad_scores=sum(o.get("bad_scores", 0) for o in outcomes),
    )


class WorkerPool:
    """The pass's search workers: `size` actors requested at once, used as they start.

    Every worker asks `search.worker_cpus` CPUs plus one unit of `search.worker_resource` when set.
    Workers the cluster cannot place yet stay pending actors; that pending demand is what the Ray
    autoscaler sees and adds nodes for, and each worker joins the pass when it starts. The pass
    waits only for `search.min_workers` (at most `search.worker_start_timeout_s`, then fails naming
    the resources); killing the pool at the end also withdraws the demand of workers never placed.
    """

    def __init__(self, cfg: Config, servers: Servers, size: int):
        from restmcts.actors.runtime import actor_options
        from restmcts.actors.search_worker import SearchWorker

        self.start_timeout_s = cfg.search.worker_start_timeout_s
        self.options = actor_options(cfg.search.worker_cpus, 0, resource=cfg.search.worker_resource)
        self.handles = [SearchWorker.options(**self.options).remote(cfg, servers.policy, servers.prm, f"worker-{i}")
                        for i in range(size)]
        self.probes = {h.stats.remote(): i for i, h in enumerate(self.handles)}  # answer once a worker runs
        self.running: list[int] = []

    def poll(self, timeout: float = 0.0) -> list[int]:
        """Indices of workers that started since the last poll (waiting up to `timeout` seconds)."""
        import ray

        if not self.probes:
            return []
        if timeout > 0:
            ray.wait(list(self.probes), num_returns=1, timeout=timeout)
        done, _ = ray.wait(list(self.probes), num_returns=len(self.probes), timeout=0)
        started = []
        for ref in done:
            i = self.probes.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as err:
                if err.actor_init_failed:
                    raise  # the constructor failed: every worker would
                self.probes[self.handles[i].stats.remote()] = i  # died while starting: it restarts
                continue
            started.append(i)
        self.running += started
        return started

    def begin_pass(self) -> None:
        """Zero the running workers' counters: a pass's phase times are its own (a worker that
        starts later, or restarts, begins at zero)."""
        import ray

        if self.running:
            ray.wait([self.handles[w].begin_pass.remote() for w in self.running], num_returns=len(self.running))

    def wait_for(self, count: int) -> list[int]:
        """Block until `count` workers run; return every worker that started meanwhile."""
        deadline = time.time() + self.start_timeout_s
        started = self.poll()
        while len(self.running) < count:
            if time.time() > deadline:
                raise RuntimeError(self._no_room(count))
            started += self.poll(timeout=min(1.0, max(deadline - time.time(), 0.01)))
        return started

    def _no_room(self, count: int) -> str:
        import ray

        ask = {"CPU": self.options["num_cpus"], **self.options.get("resources", {})}
        return (f"search: {len(self.running)} of search.min_workers={count} search workers started within "
                f"search.worker_start_timeout_s={self.start_timeout_s:g}s; each asks {ask}. "
                f"Cluster resources: {ray.cluster_resources()}, available: {ray.available_resources()}. "
                "Lower search.min_workers or search.worker_cpus, check search.worker_resource against the "
                "node types' resources (cluster/), or let the autoscaler add nodes.")

    def shutdown(self) -> None:
        import ray

        for handle in self.handles:
            ray.kill(handle)


def _phase_times(workers: list[Any]) -> tuple[dict[str, float], float]:
    """Tree-seconds by phase, summed over workers (a dead worker's share is lost), and the
    largest peak resident memory of a worker in MiB."""
    import ray

    totals = {"policy_wait": 0.0, "prm_wait": 0.0, "tree_ops": 0.0, "judge": 0.0}
    peak_rss = 0.0
    for w in workers:
        try:
            s = ray.get(w.stats.remote(), timeout=10)
        except Exception:
            continue
        totals["policy_wait"] += s.client.policy_seconds
        totals["prm_wait"] += s.client.prm_seconds
        totals["tree_ops"] += max(0.0, s.search_seconds - s.client.policy_seconds - s.client.prm_seconds)
        totals["judge"] += s.judge_seconds
        peak_rss = max(peak_rss, s.peak_rss_mb)
    return totals, peak_rss
