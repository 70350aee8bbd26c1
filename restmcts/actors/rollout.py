"""The rollout group: the inference servers and one search worker pool that serve every pass of a
run (its searches and its evaluations), as a trainer's worker groups live for the whole run.

    rollout = Rollout(cfg, servers)
    summary = rollout.run_pass(questions, settings, iteration, out_dir)   # settings per call
    rollout.release()          # with search.release_during_training: workers stop while learners train
    rollout.shutdown()

The pool asks for `search.num_workers` workers once and starts passes when `search.min_workers`
of them run (restmcts.actors.search_pass.WorkerPool): workers the cluster cannot place yet stay
pending demand for the autoscaler and join later passes as they start. Each pass carries its own
tree settings to the workers, so searches and evaluations with different settings share them.
"""

from __future__ import annotations

from typing import Any

from restmcts.actors.search_pass import PassSummary, WorkerPool, run_pass
from restmcts.actors.servers import Servers
from restmcts.config import Config, SearchSettings
from restmcts.tasks import Question


class Rollout:
    def __init__(self, cfg: Config, servers: Servers) -> None:
        self.cfg = cfg
        self.servers = servers
        self.pool: WorkerPool | None = None

    def run_pass(self, questions: list[Question], settings: SearchSettings, iteration: int, out_dir: str,
                 **names: Any) -> PassSummary:
        """restmcts.actors.search_pass.run_pass on the group's workers (started on first use)."""
        if self.pool is None:
            self.pool = WorkerPool(self.cfg, self.servers, self.cfg.search.num_workers)
        return run_pass(self.cfg, self.servers, questions, settings, iteration, out_dir, pool=self.pool, **names)

    def release(self) -> None:
        """Stop the search workers (and withdraw the demand of those never placed); the next pass
        starts a new pool."""
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def shutdown(self) -> None:
        self.release()
        self.servers.shutdown()
