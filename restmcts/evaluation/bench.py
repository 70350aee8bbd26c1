"""Search throughput, engine saturation and learner throughput, measured side by side in one run.

    report = run_bench(cfg, "runs/bench", sweep=(1, 8, 64, 256))   # jobs/bench.py writes bench.json

One Ray session, one set of inference servers, one question list; every measurement reuses them:
1. sequential   the reference implementation's schedule on this project's engines: one tree at
                a time, one generate call per candidate and one PRM call per prefix, each
                awaited before the next (`search.sequential_calls`).
2. sweep        the distributed search with T trees in flight for each T in `sweep` (1 worker up
                to 8 trees, then 2 workers), over the first max(8, 2 T) questions of the list.
3. engine limit full batches sent straight to the policy server (`generate_many`) in the search's
                shapes: prefixes of the widest run's traces, `search.branch` samples per prompt,
                the search's step budget; the tokens per second the engine reaches alone.
4. profile      where tree time went in the widest run (waiting on the policy or the PRM, tree
                ops, answer checking), engine busy time, and per-call wait against engine time.
5. learners     policy SFT and PRM regression on the widest run's replay with 1 and 2 learners.
6. weight sync  with `sync_models`: seconds to push a live learner's weights into a live server
                replica by each sync method and through the driver, beside an in-process copy
                of the same bytes, and the driver's peak memory meanwhile (evaluation.sync_bench).

Nodes are policy calls (expansions and rollout steps); rates are per wall second of the pass.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from restmcts import replay, storage
from restmcts.config import Config
from restmcts.engines.base import EngineStats, GenerateRequest
from restmcts.evaluation.sync_bench import SyncBench, check_models, run_sync_bench
from restmcts.prompt import PromptFormat
from restmcts.tasks import task_for

if TYPE_CHECKING:
    from restmcts.actors.search_pass import PassSummary
    from restmcts.actors.servers import Servers


@dataclass(frozen=True)
class SearchPoint:
    """One search pass of the sweep."""

    trees_in_flight: int
    workers: int
    questions: int
    nodes: int  # policy calls
    prm_calls: int
    tokens: int
    wall_s: float
    nodes_per_s: float
    tokens_per_s: float
    policy_mean_batch_rows: float
    prm_mean_batch_rows: float


@dataclass(frozen=True)
class LearnerPoint:
    role: str
    learners: int
    samples: int
    steps: int
    samples_per_s: float
    tokens_per_s: float


@dataclass
class BenchReport:
    sequential_nodes_per_s: float = 0.0
    batched_nodes_per_s: float = 0.0  # the best point of the sweep
    speedup: float = 0.0  # batched / sequential
    engine_tokens_per_s_limit: float = 0.0
    search_tokens_per_s: float = 0.0  # during the widest sweep point
    saturation: float = 0.0  # search_tokens_per_s / engine_tokens_per_s_limit
    sequential: SearchPoint | None = None
    sweep: list[SearchPoint] = field(default_factory=list)
    engine_limit: dict[str, float] = field(default_factory=dict)
    profile: dict[str, float] = field(default_factory=dict)
    learners: list[LearnerPoint] = field(default_factory=list)
    # Weight sync per model (empty without sync models): median seconds per path ("collective",
    # "object_store", "via_driver"), the in-process copy of the same bytes, the collective's
    # median over that copy, the driver's peak memory above its level before each sync.
    sync_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    sync_copy_limit_seconds: dict[str, float] = field(default_factory=dict)
    sync_collective_over_copy_limit: dict[str, float | None] = field(default_factory=dict)
    sync_driver_peak_mb: dict[str, dict[str, float]] = field(default_factory=dict)
    sync_bytes: dict[str, int] = field(default_factory=dict)
    sync: SyncBench | None = None  # every repeat's seconds

    def add_sync(self, sync: SyncBench) -> None:
        self.sync = sync
        for m in sync.models:
            self.sync_seconds[m.model] = {p.method: p.median_s for p in m.paths}
            self.sync_copy_limit_seconds[m.model] = m.copy_limit_s
            self.sync_collective_over_copy_limit[m.model] = m.collective_over_copy_limit
            self.sync_driver_peak_mb[m.model] = {p.method: p.driver_peak_mb for p in m.paths}
            self.sync_bytes[m.model] = m.bytes

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    def table(self) -> str:
        lines = [f"{'trees':>6} {'workers':>7} {'questions':>9} {'nodes/s':>9} {'tokens/s':>9} "
                 f"{'policy rows/batch':>17} {'prm rows/batch':>14}"]
        points = ([self.sequential] if self.sequential else []) + self.sweep
        for i, p in enumerate(points):
            name = "seq" if i == 0 and self.sequential else str(p.trees_in_flight)
            lines.append(f"{name:>6} {p.workers:>7} {p.questions:>9} {p.nodes_per_s:>9.1f} {p.tokens_per_s:>9.0f} "
                         f"{p.policy_mean_batch_rows:>17.1f} {p.prm_mean_batch_rows:>14.1f}")
        lines.append(f"batched / sequential nodes/s: {self.speedup:.1f}x")
        lines.append(f"search tokens/s {self.search_tokens_per_s:.0f} / engine limit "
                     f"{self.engine_tokens_per_s_limit:.0f} = saturation {self.saturation:.0%}")
        for p in self.learners:
            lines.append(f"learner {p.role:<6} x{p.learners}: {p.samples_per_s:.1f} samples/s, "
                         f"{p.tokens_per_s:.0f} tokens/s ({p.samples} samples, {p.steps} steps)")
        for model, seconds in self.sync_seconds.items():
            peaks = self.sync_driver_peak_mb[model]
            paths = ", ".join(f"{k} {v:.3f} s (driver +{peaks[k]:.0f} MB)" for k, v in seconds.items())
            ratio = self.sync_collective_over_copy_limit[model]
            lines.append(f"sync {model} ({self.sync_bytes[model] / 2**20:.0f} MB): {paths}; copy limit "
                         f"{self.sync_copy_limit_seconds[model]:.4f} s"
                         + (f"; collective / copy limit {ratio:.1f}x" if ratio is not None else ""))
        return "\n".join(lines)


def run_bench(cfg: Config, out: str, sweep: tuple[int, ...] = (1, 8, 64, 256), sequential_questions: int = 8,
              engine_rows: int = 512, learner_counts: tuple[int, ...] = (1, 2), sync_models: tuple[str, ...] = (),
              sync_repeats: int = 3) -> BenchReport:
    """Run every measurement against one set of servers; write `out/bench.json` and return it.
    With `sync_models` ("tiny", "smollm2-135m"), the weight sync of each too, after the search's
    servers are gone (evaluation.sync_bench)."""
    from restmcts.actors.servers import start_servers

    if not sweep or min(sweep) < 1:
        raise ValueError(f"sweep: need trees-in-flight counts >= 1, got {sweep}")
    check_models(sync_models)  # before the long parts: a typo fails now
    widest = max(sweep)
    questions = task_for(cfg).questions("train", max(8, 2 * widest, sequential_questions))
    report = BenchReport()
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm)
    try:
        report.sequential, _ = _search_point(cfg, servers, questions[:sequential_questions], 1,
                                             f"{out}/sequential", sequential=True)
        for trees in sorted(sweep):
            point, summary = _search_point(cfg, servers, questions[:max(8, 2 * trees)], trees,
                                           f"{out}/trees-{trees}")
            report.sweep.append(point)
            if trees == widest:
                report.profile = _profile(point, summary)
        report.engine_limit = _engine_limit(cfg, servers, f"{out}/trees-{widest}/traces.parquet", engine_rows)
    finally:
        servers.shutdown()
    for role in ("prm", "policy"):
        for n in learner_counts:
            report.learners.append(_learner_point(cfg, role, n, f"{out}/trees-{widest}", f"{out}/learners"))
    if sync_models:
        report.add_sync(run_sync_bench(cfg, f"{out}/sync", sync_models, repeats=sync_repeats))

    best = max(report.sweep, key=lambda p: p.nodes_per_s)
    report.sequential_nodes_per_s = report.sequential.nodes_per_s
    report.batched_nodes_per_s = best.nodes_per_s
    report.speedup = best.nodes_per_s / max(report.sequential.nodes_per_s, 1e-9)
    report.search_tokens_per_s = report.sweep[-1].tokens_per_s
    report.engine_tokens_per_s_limit = report.engine_limit["tokens_per_s"]
    report.saturation = report.search_tokens_per_s / max(report.engine_tokens_per_s_limit, 1e-9)
    storage.write_text(f"{out}/bench.json", report.to_json() + "\n")
    return report


def _search_point(cfg: Config, servers: Servers, questions: list[Any], trees: int, out: str,
                  sequential: bool = False) -> tuple[SearchPoint, tuple[PassSummary, dict, dict]]:
    from restmcts.actors.search_pass import run_pass

    workers = 1 if trees <= 8 else 2
    storage.remove(out)  # a pass resumes from what it finds: start every measurement empty
    search = dataclasses.replace(cfg.search, num_workers=workers, min_workers=workers,
                                 trees_per_worker=max(1, trees // workers), sequential_calls=sequential)
    before = servers.stats()
    summary = run_pass(dataclasses.replace(cfg, search=search), servers, questions, cfg.search.settings(), 1, out,
                       label=f"trees {trees}")
    after = servers.stats()
    wall = max(summary.wall_seconds, 1e-9)
    policy, prm = _delta(before["policy"], after["policy"]), _delta(before["prm"], after["prm"])
    point = SearchPoint(
        trees_in_flight=trees, workers=workers, questions=len(questions), nodes=summary.policy_calls,
        prm_calls=summary.prm_calls, tokens=summary.tokens, wall_s=round(wall, 3),
        nodes_per_s=summary.policy_calls / wall, tokens_per_s=summary.tokens / wall,
        policy_mean_batch_rows=policy["mean_batch_rows"], prm_mean_batch_rows=prm["mean_batch_rows"],
    )
    return point, (summary, policy, prm)


def _delta(before: list[EngineStats], after: list[EngineStats]) -> dict[str, float]:
    """Counters of all replicas of one role over an interval; rows per batch over that interval."""
    keys = ("requests", "rows", "batches", "generated_tokens", "busy_s")
    d = {k: float(sum(getattr(a, k) - getattr(b, k) for b, a in zip(before, after, strict=True))) for k in keys}
    if d["batches"]:
        d["mean_batch_rows"] = d["rows"] / d["batches"]
    else:  # a backend that schedules its own batches (vLLM) reports rows in flight instead
        d["mean_batch_rows"] = sum(a.mean_batch_rows for a in after) / max(len(after), 1)
    return d


def _profile(point: SearchPoint, measured: tuple[PassSummary, dict, dict]) -> dict[str, float]:
    """Where the widest run's time went. Tree-seconds are summed over trees in flight."""
    summary, policy, prm = measured
    phases = summary.phases
    tree_seconds = sum(phases.values()) or 1e-9
    profile = {f"tree_share_{k}": v / tree_seconds for k, v in phases.items()}
    profile |= {
        "wall_s": point.wall_s,
        "policy_engine_busy_share": policy["busy_s"] / point.wall_s,
        "prm_engine_busy_share": prm["busy_s"] / point.wall_s,
        "policy_wait_ms_per_call": 1000 * phases.get("policy_wait", 0.0) / max(summary.policy_calls, 1),
        "policy_engine_ms_per_batch": 1000 * policy["busy_s"] / max(policy["batches"], 1),
        "prm_wait_ms_per_call": 1000 * phases.get("prm_wait", 0.0) / max(prm["requests"], 1),
        "prm_engine_ms_per_batch": 1000 * prm["busy_s"] / max(prm["batches"], 1),
        "tree_ops_us_per_node": 1e6 * phases.get("tree_ops", 0.0) / max(summary.policy_calls, 1),
    }
    return {k: round(v, 4) for k, v in profile.items()}


def _engine_limit(cfg: Config, servers: Servers, traces_path: str, rows: int) -> dict[str, float]:
    """Tokens/s of the policy server on full batches of search-shaped requests (prefixes of real traces)."""
    import ray

    fmt = PromptFormat.from_config(cfg.data)
    traces = replay.read_traces(traces_path)
    if not traces:
        raise ValueError(f"{traces_path}: no traces to take request shapes from")
    rng = random.Random(cfg.search.seed)
    requests = []
    for i in range(max(1, rows // cfg.search.branch)):
        t = rng.choice(traces)
        k = rng.randrange(len(t.steps))
        requests.append(GenerateRequest(prompt=fmt.render(t.question, t.steps[:k]), n=cfg.search.branch, seed=i,
                                        temperature=cfg.search.temperature, max_tokens=cfg.search.max_step_tokens,
                                        stop=fmt.delimiter))
    server = servers.policy[0]
    ray.get(server.generate_many.remote(requests[: cfg.servers.max_batch_size // cfg.search.branch]))  # warm up
    before = ray.get(server.stats.remote())
    start = time.perf_counter()
    ray.get(server.generate_many.remote(requests))
    wall = time.perf_counter() - start
    d = _delta([before], [ray.get(server.stats.remote())])
    return {"rows": d["rows"], "wall_s": round(wall, 3), "tokens": d["generated_tokens"],
            "tokens_per_s": d["generated_tokens"] / wall, "mean_batch_rows": d["mean_batch_rows"]}


def _learner_point(cfg: Config, role: str, learners: int, replay_dir: str, out: str) -> LearnerPoint:
    from restmcts.learners import LearnerGroup

    lcfg = cfg.replace(f"learners.num_learners={learners}")
    group = LearnerGroup(lcfg, role)
    init = cfg.model.policy if role == "policy" else cfg.model.prm
    data = f"{replay_dir}/traces.parquet" if role == "policy" else f"{replay_dir}/values.parquet"
    try:
        result = group.train(init, [data], f"{out}/{role}-{learners}")
    finally:
        group.shutdown()
    return LearnerPoint(role=role, learners=learners, samples=result.samples, steps=result.steps,
                        samples_per_s=result.samples_per_s, tokens_per_s=result.tokens_per_s)
