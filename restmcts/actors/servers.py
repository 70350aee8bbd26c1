"""Starting the policy and PRM server replicas, and putting new weights into them.

    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm, record=f"{out}/weights.json")   # version 0
    servers.push("policy", learners, Version(1, f"{out}/iter_1/policy"), cfg)   # from live learners
    servers.load("prm", Version(1, f"{out}/iter_1/prm"))                        # from a checkpoint

Each replica gets its own placement-group bundle with its GPU when servers.num_gpus > 0, and
plain CPU resources otherwise; with servers.resource set it also asks one unit of that custom
resource, so it lands on the node types that advertise it (cluster/).

Every change of weights first writes the new version to the run's record (restmcts.weights),
then moves the weights; a replica that Ray restarts reads the record, so it serves the same
version as the others whenever it died. After a push every replica is asked which version it
serves; any that does not serve the new one (its broadcast failed) loads it from the checkpoint.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from restmcts.actors.runtime import actor_options, gpu_bundles
from restmcts.config import Config
from restmcts.weights import GroupSpec, Version, VersionRecord

if TYPE_CHECKING:
    from restmcts.learners.group import LearnerGroup

ROLES = ("policy", "prm")


@dataclass(frozen=True)
class SyncReport:
    """How one role's new weights reached its replicas."""

    role: str
    version: int
    method: str  # "collective" | "object_store" | "checkpoint"
    seconds: float
    bytes: int  # bytes of weights sent (0 when read from a checkpoint)
    replicas: int
    reloaded: int = 0  # replicas that missed the push and loaded the checkpoint instead


@dataclass
class Servers:
    policy: list[Any]
    prm: list[Any]
    placement: list[Any]
    record: VersionRecord | None = None

    def replicas(self, role: str) -> list[Any]:
        if role not in ROLES:
            raise ValueError(f"unknown server role {role!r}; valid: {', '.join(ROLES)}")
        return self.policy if role == "policy" else self.prm

    def push(self, role: str, learners: LearnerGroup, version: Version, cfg: Config) -> SyncReport:
        """Send the weights `learners` hold to every replica of `role` by `sync.method`, never
        through this process; `version.path` is where the same weights are saved."""
        import ray

        start = time.perf_counter()
        self._record(role, version)
        replicas = self.replicas(role)
        manifest = learners.manifest(version.version, cfg.sync.bucket_mb)
        if cfg.sync.method == "collective":
            host, port = learners.sync_address()
            spec = GroupSpec(host, port, 1 + len(replicas), sync_backend(cfg), cfg.sync.timeout_s,
                             f"restmcts-sync-{uuid.uuid4().hex}" if cfg.sync.shared_memory else "",
                             max(1, int(cfg.sync.shm_chunk_mb * 2**20)))
            receiving = [h.receive_weights.remote(spec, rank, manifest, version.path)
                         for rank, h in enumerate(replicas, start=1)]
            _quietly(lambda: learners.send_weights(spec, manifest))
        else:
            refs = learners.put_weights(manifest)
            receiving = [h.fetch_weights.remote(refs, manifest, version.path) for h in replicas]
        ray.wait(receiving, num_returns=len(receiving))
        reloaded = self._catch_up(role, version)
        return SyncReport(role, version.version, cfg.sync.method, time.perf_counter() - start, manifest.nbytes,
                          len(replicas), reloaded)

    def load(self, role: str, version: Version) -> SyncReport:
        """Every replica of `role` reads `version` from its checkpoint folder."""
        start = time.perf_counter()
        self._record(role, version)
        reloaded = self._catch_up(role, version)
        return SyncReport(role, version.version, "checkpoint", time.perf_counter() - start, 0,
                          len(self.replicas(role)), reloaded)

    def versions(self, role: str) -> list[Version]:
        import ray

        return ray.get([h.version.remote() for h in self.replicas(role)])

    def stats(self) -> dict[str, list[Any]]:
        import ray

        return {"policy": ray.get([h.stats.remote() for h in self.policy]),
                "prm": ray.get([h.stats.remote() for h in self.prm])}

    def shutdown(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        for handle in self.policy + self.prm:
            ray.kill(handle)
        for pg in self.placement:
            remove_placement_group(pg)

    def _record(self, role: str, version: Version) -> None:
        if self.record is not None:
            self.record.set(role, version)

    def _catch_up(self, role: str, version: Version) -> int:
        """Replicas not serving `version` load it from its checkpoint; returns how many did."""
        import ray

        behind = [h for h, v in zip(self.replicas(role), self.versions(role), strict=True) if v.path != version.path]
        ray.get([h.load_checkpoint.remote(version) for h in behind])
        return len(behind)


def sync_backend(cfg: Config) -> str:
    """The collective's backend: `sync.backend`, or NCCL when learners and servers both hold GPUs."""
    if cfg.sync.backend != "auto":
        return cfg.sync.backend
    return "nccl" if cfg.learners.num_gpus > 0 and cfg.servers.num_gpus > 0 else "gloo"


def _quietly(send: Any) -> None:
    """Run the sender; a failed broadcast (a receiver died) is left to the catch-up that follows."""
    import ray

    try:
        send()
    except (RuntimeError, ray.exceptions.RayError) as err:
        import sys

        print(f"[servers] weight broadcast failed ({type(err).__name__}: {err}); replicas that missed it "
              "load the checkpoint", file=sys.stderr)


def start_servers(cfg: Config, policy_path: str, prm_path: str, record: str | None = None,
                  version: int = 0) -> Servers:
    """Start `servers.policy_replicas` + `servers.prm_replicas` actors serving these checkpoints,
    and wait until ready. With `record` (where a run keeps its version record), the checkpoints
    are recorded as `version` first, and every later change of weights is recorded there too."""
    import ray

    from restmcts.actors.policy_server import PolicyServer
    from restmcts.actors.prm_server import PRMServer

    if record:
        for role, path in zip(ROLES, (policy_path, prm_path), strict=True):
            VersionRecord(record).set(role, Version(version, path))
    s = cfg.servers
    fix = "Lower servers.policy_replicas, servers.prm_replicas, servers.num_gpus or servers.num_cpus"
    policy_pg = gpu_bundles(s.policy_replicas, s.num_cpus, s.num_gpus, s.resource, fix)
    prm_pg = gpu_bundles(s.prm_replicas, s.num_cpus, s.num_gpus, s.resource, fix)
    policy = [
        PolicyServer.options(**actor_options(s.num_cpus, s.num_gpus, policy_pg, i, s.resource))
        .remote(s, policy_path, cfg.model.dtype, f"policy-{i}", record)
        for i in range(s.policy_replicas)
    ]
    prm = [
        PRMServer.options(**actor_options(s.num_cpus, s.num_gpus, prm_pg, i, s.resource))
        .remote(s, prm_path, cfg.model.dtype, f"prm-{i}", record)
        for i in range(s.prm_replicas)
    ]
    ray.get([h.ready.remote() for h in policy + prm])
    return Servers(policy, prm, [pg for pg in (policy_pg, prm_pg) if pg is not None],
                   VersionRecord(record) if record else None)
