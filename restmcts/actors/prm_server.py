"""PRMServer: a Ray actor that serves process-reward values from one PRM engine replica.

`score(texts)` returns sigmoid values in [0, 1], one per rendered partial solution; concurrent
calls from all trees batch together in the engine. Verbs: `score`, `load_weights`, `stats`.
"""

from __future__ import annotations

from typing import Any

import ray

from restmcts.config import ServersConfig
from restmcts.engines import make_score_engine
from restmcts.telemetry import EngineReporter


@ray.remote(max_restarts=-1, max_task_retries=0)
class PRMServer:
    def __init__(self, cfg: ServersConfig, model_path: str, dtype: str, name: str = "prm"):
        self.name = name
        self.reporter = EngineReporter(name)
        self.engine = make_score_engine(cfg, model_path, dtype)

    async def ready(self) -> str:
        return self.name

    async def score(self, texts: list[str]) -> list[float]:
        try:
            return await self.engine.score(texts)
        finally:
            self.reporter.report(self.engine.stats())

    async def load_weights(self, state_dict: dict[str, Any]) -> None:
        await self.engine.load_weights(state_dict)

    async def stats(self) -> Any:
        return self.engine.stats()
