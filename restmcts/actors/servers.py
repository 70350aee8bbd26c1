"""Starting the policy and PRM server replicas, and pushing new weights into them.

    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm)
    servers.sync_weights(policy_state_dict=..., prm_state_dict=...)   # no restart

Each replica gets its own placement-group bundle with its GPU when servers.num_gpus > 0, and
plain CPU resources otherwise; with servers.resource set it also asks one unit of that custom
resource, so it lands on the node types that advertise it (cluster/). New weights travel once
through the object store (`ray.put`) and every replica loads them between batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from restmcts.actors.runtime import actor_options, gpu_bundles
from restmcts.config import Config


@dataclass
class Servers:
    policy: list[Any]
    prm: list[Any]
    placement: list[Any]

    def sync_weights(self, policy_state: dict[str, Any] | None = None,
                     prm_state: dict[str, Any] | None = None) -> None:
        import ray

        calls = []
        if policy_state is not None:
            ref = ray.put(policy_state)
            calls += [h.load_weights.remote(ref) for h in self.policy]
        if prm_state is not None:
            ref = ray.put(prm_state)
            calls += [h.load_weights.remote(ref) for h in self.prm]
        ray.get(calls)

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


def start_servers(cfg: Config, policy_path: str, prm_path: str) -> Servers:
    """Start `servers.policy_replicas` + `servers.prm_replicas` actors and wait until ready."""
    import ray

    from restmcts.actors.policy_server import PolicyServer
    from restmcts.actors.prm_server import PRMServer

    s = cfg.servers
    fix = "Lower servers.policy_replicas, servers.prm_replicas, servers.num_gpus or servers.num_cpus"
    policy_pg = gpu_bundles(s.policy_replicas, s.num_cpus, s.num_gpus, s.resource, fix)
    prm_pg = gpu_bundles(s.prm_replicas, s.num_cpus, s.num_gpus, s.resource, fix)
    policy = [
        PolicyServer.options(**actor_options(s.num_cpus, s.num_gpus, policy_pg, i, s.resource))
        .remote(s, policy_path, cfg.model.dtype, f"policy-{i}")
        for i in range(s.policy_replicas)
    ]
    prm = [
        PRMServer.options(**actor_options(s.num_cpus, s.num_gpus, prm_pg, i, s.resource))
        .remote(s, prm_path, cfg.model.dtype, f"prm-{i}")
        for i in range(s.prm_replicas)
    ]
    ray.get([h.ready.remote() for h in policy + prm])
    return Servers(policy, prm, [pg for pg in (policy_pg, prm_pg) if pg is not None])
