"""PRMServer: a Ray actor that serves process-reward values from one PRM engine replica.

`score(texts)` returns sigmoid values in [0, 1], one per rendered partial solution; concurrent
calls from all trees batch together in the engine. Verbs: `score`, and the weight verbs every
replica has (restmcts.actors.replica).
"""

from __future__ import annotations

from typing import Any

import ray

from restmcts.actors.replica import Replica
from restmcts.config import ServersConfig
from restmcts.engines import make_score_engine


@ray.remote(max_restarts=-1, max_task_retries=0)
class PRMServer(Replica):
    role = "prm"

    def make_engine(self, cfg: ServersConfig, model_path: str, dtype: str) -> Any:
        return make_score_engine(cfg, model_path, dtype)

    async def score(self, texts: list[str]) -> list[float]:
        try:
            return await self.engine.score(texts)
        finally:
            self.reporter.report(self.engine.stats())
