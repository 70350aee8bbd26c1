"""PolicyServer: a Ray actor that serves next-step proposals from one policy engine replica.

The actor is async, so requests from every search tree on every worker arrive concurrently and
the engine (hf dynamic batcher or vLLM's continuous batching) decides the batch. Verbs:
`generate`, `generate_many`, `load_weights`, `stats`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from restmcts.config import ServersConfig
from restmcts.engines import Completion, GenerateRequest, make_policy_engine
from restmcts.telemetry import EngineReporter


@ray.remote(max_restarts=-1, max_task_retries=0)
class PolicyServer:
    def __init__(self, cfg: ServersConfig, model_path: str, dtype: str, name: str = "policy"):
        self.name = name
        self.reporter = EngineReporter(name)
        self.engine = make_policy_engine(cfg, model_path, dtype)

    async def ready(self) -> str:
        return self.name

    async def generate(self, request: GenerateRequest) -> list[Completion]:
        try:
            return await self.engine.generate(request)
        finally:
            self.reporter.report(self.engine.stats())

    async def generate_many(self, requests: list[GenerateRequest]) -> list[list[Completion]]:
        """Several requests in one Ray call; they still batch with everyone else's."""
        return list(await asyncio.gather(*(self.engine.generate(r) for r in requests)))

    async def load_weights(self, state_dict: dict[str, Any]) -> None:
        await self.engine.load_weights(state_dict)

    async def stats(self) -> Any:
        return self.engine.stats()
