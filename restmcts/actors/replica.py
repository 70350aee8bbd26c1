"""What a policy or PRM server replica is besides its serving verb: the weights it serves and how
new ones arrive.

A replica serves one `Version` (restmcts.weights.versions) of its role's model. It starts from
the version the run's record names, when there is a record and it names one, so a replica that
Ray restarts after a sync (constructor arguments are those of the first start) comes back with
the latest synced weights, not the run's first checkpoint. New weights arrive four ways:

- `receive_weights(spec, rank, manifest)`: broadcast by a learner over a weight-sync group;
- `fetch_weights(refs, manifest, path)`: the same buckets, put in Ray's object store by the
  learner and mapped here without a copy;
- `load_weights(state_dict, version)`: a whole state dict (Ray resolves a ref given for it);
- `load_checkpoint(version)`: read from the version's checkpoint folder (a resumed run, or
  evaluation switching between the models of a run's iterations).
"""

from __future__ import annotations

from typing import Any

from restmcts.config import ServersConfig
from restmcts.telemetry import EngineReporter
from restmcts.weights import GroupSpec, Manifest, Version, VersionRecord


class Replica:
    role = ""  # "policy" | "prm": the key of this role in the version record

    def __init__(self, cfg: ServersConfig, model_path: str, dtype: str, name: str, record: str | None = None):
        self.name = name
        self.reporter = EngineReporter(name)
        latest = VersionRecord(record).get(self.role) if record else None
        self.serving = latest or Version(0, model_path)
        self.engine = self.make_engine(cfg, self.serving.path, dtype)

    def make_engine(self, cfg: ServersConfig, model_path: str, dtype: str) -> Any:
        raise NotImplementedError

    async def ready(self) -> str:
        return self.name

    async def version(self) -> Version:
        return self.serving

    async def receive_weights(self, spec: GroupSpec, rank: int, manifest: Manifest, path: str) -> None:
        await self.engine.receive_weights(spec, rank, manifest)
        self.serving = Version(manifest.version, path)

    async def fetch_weights(self, refs: list[Any], manifest: Manifest, path: str) -> None:
        from restmcts.weights.group import shared_bytes, unpack

        state: dict[str, Any] = {}
        for ref, bucket in zip(refs, manifest.buckets(), strict=True):
            state.update(unpack(shared_bytes(await ref), bucket))  # the engine copies out of them
        await self.engine.load_weights(state)
        self.serving = Version(manifest.version, path)

    async def load_weights(self, state_dict: dict[str, Any], version: Version) -> None:
        await self.engine.load_weights(state_dict)
        self.serving = version

    async def load_checkpoint(self, version: Version) -> None:
        import asyncio

        from restmcts.checkpoints import read_weights

        await self.engine.load_weights(await asyncio.to_thread(read_weights, version.path))
        self.serving = version

    async def stats(self) -> Any:
        return self.engine.stats()
