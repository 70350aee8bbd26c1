"""PolicyServer: a Ray actor that serves next-step proposals from one policy engine replica.

The actor is async, so requests from every search tree on every worker arrive concurrently and
the engine (hf dynamic batcher or vLLM's continuous batching) decides the batch. Verbs:
`generate`, `generate_many`, and the weight verbs every replica has (restmcts.actors.replica).
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from restmcts.actors.replica import Replica
from restmcts.config import ServersConfig
from restmcts.engines import Completion, GenerateRequest, make_policy_engine


@ray.remote(max_restarts=-1, max_task_retries=0)
class PolicyServer(Replica):
    role = "policy"

    def make_engine(self, cfg: ServersConfig, model_path: str, dtype: str) -> Any:
        return make_policy_engine(cfg, model_path, dtype)

    async def generate(self, request: GenerateRequest) -> list[Completion]:
        try:
            return await self.engine.generate(request)
        finally:
            self.reporter.report(self.engine.stats())

    async def generate_many(self, requests: list[GenerateRequest]) -> list[list[Completion]]:
        """Several requests in one Ray call; they still batch with everyone else's."""
        return list(await asyncio.gather(*(self.engine.generate(r) for r in requests)))
