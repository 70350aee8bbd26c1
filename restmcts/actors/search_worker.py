"""SearchWorker: a Ray actor that runs many search trees at once against the inference servers.

`run(questions, settings, iteration)` starts one asyncio task per question, at most
`search.trees_per_worker` trees in flight, each awaiting the servers through a ModelClient. Each
call carries its own tree settings (restmcts.config.SearchSettings), so one worker can serve
passes with different settings; what the worker itself is (trees in flight, call schedule) comes
from the config it was started with.
A finished tree is judged and reduced to replay records at once, so a worker holds records,
never trees, for the questions it has finished (except the JSON of the few trees a pass exports,
`search.export_trees`).

A step after which the policy ended its message (EOS) ends the solution (restmcts.tasks.MessageEnds):
real chat models stop where they are done, and their last step need not say "The answer is".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray

from restmcts.actors.client import ClientStats, ModelClient
from restmcts.config import Config, SearchSettings
from restmcts.replay.extract import QuestionOutcome, judge, to_records
from restmcts.search import derive_seed, run_strategy
from restmcts.tasks import Question, task_for
from restmcts.telemetry import inc, metric


@dataclass
class WorkerStats:
    trees_in_flight: int
    trees_done: int
    search_seconds: float  # tree-seconds inside strategies (model waits + tree ops)
    judge_seconds: float  # answer checking
    client: ClientStats
    peak_rss_mb: float = 0.0  # the worker process's peak resident memory


@ray.remote(max_restarts=-1, max_task_retries=0)
class SearchWorker:
    def __init__(self, cfg: Config, policy: list[Any], prm: list[Any], name: str = "worker"):
        self.cfg = cfg
        self.name = name
        self.task = task_for(cfg)
        self.client = ModelClient.from_config(cfg, policy, prm)
        self.in_flight = 0
        self.done = 0
        self.search_seconds = 0.0
        self.judge_seconds = 0.0
        self._limit: asyncio.Semaphore | None = None

    async def run(self, questions: list[Question], settings: SearchSettings, iteration: int,
                  export: Sequence[str] = ()) -> list[QuestionOutcome]:
        """Search `questions` with `settings`; the outcomes of those whose ids are in `export` carry their tree."""
        if self._limit is None:  # made on the actor's event loop
            self._limit = asyncio.Semaphore(self.cfg.search.trees_per_worker)
        wanted = set(export)
        return list(await asyncio.gather(*(self._one(q, settings, iteration, q.id in wanted) for q in questions)))

    async def _one(self, q: Question, settings: SearchSettings, iteration: int,
                   export: bool = False) -> QuestionOutcome:
        loop = asyncio.get_running_loop()
        assert self._limit is not None
        async with self._limit:
            self._track(+1)
            start = loop.time()
            try:
                seed = derive_seed(settings.seed, iteration, q.id)
                models, answers = self.client.for_question(self.task, settings)
                result = await run_strategy(settings.strategy, q.question, models, answers, settings, seed)
            finally:
                self.search_seconds += loop.time() - start
                self._track(-1)
        start = loop.time()
        result = await asyncio.to_thread(judge, result, lambda a: self.task.check(a, q.answer))
        self.judge_seconds += loop.time() - start
        outcome = to_records(q, result, iteration, export=export)
        self.done += 1
        inc("restmcts_questions_done")
        inc("restmcts_questions_solved", float(outcome.solved))
        inc("restmcts_nodes_expanded", outcome.budget.policy_calls)
        inc("restmcts_tokens_generated", outcome.budget.tokens)
        inc("restmcts_prm_calls", outcome.budget.prm_calls)
        return outcome

    def _track(self, delta: int) -> None:
        self.in_flight += delta
        metric("restmcts_trees_in_flight").set(self.in_flight, tags={"worker": self.name})

    async def begin_pass(self) -> None:
        """Start the time counters over (a pool's workers serve many passes)."""
        self.search_seconds = self.judge_seconds = 0.0
        self.client.stats = ClientStats()

    async def stats(self) -> WorkerStats:
        import resource

        return WorkerStats(self.in_flight, self.done, self.search_seconds, self.judge_seconds,
                           self.client.stats, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
