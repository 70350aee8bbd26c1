"""Where Ray runs, how actors are placed and how learner ranks find each other: the one module
that knows the environment variables (Ray's and torch.distributed's) and the placement bundles.

Jobs call `init_ray(cfg.ray)`: it attaches to a cluster when one is given (RAY_ADDRESS, a
`ray job submit` driver, or `ray.address`), and otherwise starts a local Ray bound to 127.0.0.1.

Actors that must sit together or hold a GPU (server replicas with GPUs, the ranks of a learner
group) get one bundle each in a PACKed placement group (`placement_group`, `gpu_bundles`) and
are pinned to it by `actor_options`; every other actor asks for plain resources.

A learner group's rank 0 offers an address on its node (`node_address`) and every rank joins the
world through MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE/LOCAL_RANK (`DistEnv`). LOCAL_RANK is always
0: Ray gives each GPU actor its own CUDA_VISIBLE_DEVICES, so its GPU is device 0, and on CPU the
value only matters to DeepSpeed's shared-memory all-reduce, which it enables only when LOCAL_SIZE
is set (it is not).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from restmcts.config import RayConfig

LOOPBACK = "127.0.0.1"

# How long a placement group waits for room before the error says what is missing.
PLACEMENT_TIMEOUT_S = 600.0

# Settings every local run needs: loopback only, no token auth, no hub, quiet tokenizers.
LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def init_ray(cfg: RayConfig) -> Any:
    """Attach to the configured or ambient cluster, else start a local one on loopback."""
    import ray

    if ray.is_initialized():
        return ray
    address = cfg.address or os.environ.get("RAY_ADDRESS", "")
    if address:
        ray.init(address=address, configure_logging=False)
        return ray
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    ray.init(
        num_cpus=cfg.num_cpus or None,
        include_dashboard=cfg.dashboard,
        dashboard_host=LOOPBACK,
        _node_ip_address=LOOPBACK,
        configure_logging=False,
        runtime_env={"env_vars": {k: os.environ[k] for k in LOCAL_ENV}},
    )
    return ray


def custom_resources(name: str) -> dict[str, float]:
    """One unit of the custom resource `name` (a role's node-type pin), or nothing for ""."""
    return {name: 1.0} if name else {}


def actor_options(num_cpus: float, num_gpus: float, pg: Any = None, bundle: int | None = None,
                  resource: str = "", **extra: Any) -> dict[str, Any]:
    """Ray actor options: resources (one unit of `resource` when given), and the placement-group
    bundle when one is given."""
    options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, **extra}
    if resource:
        options["resources"] = custom_resources(resource)
    if pg is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            placement_group=pg, placement_group_bundle_index=bundle if bundle is not None else -1
        )
    return options


def placement_group(count: int, num_cpus: float, num_gpus: float, resource: str = "", fix: str = "") -> Any:
    """A ready PACKed placement group of `count` bundles, each {"CPU": num_cpus}, plus its GPU(s)
    when num_gpus > 0 and one unit of `resource` when given. When it does not fit within
    PLACEMENT_TIMEOUT_S it is removed and the error shows the bundle, the cluster's resources and
    `fix` (the settings to change)."""
    import ray
    from ray.util.placement_group import placement_group as ray_placement_group
    from ray.util.placement_group import remove_placement_group

    bundle = {"CPU": num_cpus, **({"GPU": num_gpus} if num_gpus > 0 else {}), **custom_resources(resource)}
    pg = ray_placement_group([dict(bundle) for _ in range(count)], strategy="PACK")
    ready, _ = ray.wait([pg.ready()], timeout=PLACEMENT_TIMEOUT_S)
    if not ready:
        remove_placement_group(pg)
        raise RuntimeError(
            f"no room for {count} bundle(s) of {bundle} after {PLACEMENT_TIMEOUT_S:.0f}s; cluster resources: "
            f"{ray.cluster_resources()}. {fix or 'Ask for fewer resources'}, or add nodes."
        )
    return pg


def gpu_bundles(count: int, num_cpus: float, num_gpus: float, resource: str = "", fix: str = "") -> Any:
    """`placement_group` for actors that hold GPUs; None on CPU-only runs (no bundles needed)."""
    return placement_group(count, num_cpus, num_gpus, resource, fix) if num_gpus > 0 else None


@dataclass(frozen=True)
class DistEnv:
    """One rank's place in a data-parallel world, exported as torch.distributed env vars."""

    rank: int
    world_size: int
    master_addr: str
    master_port: int
    local_rank: int = 0

    def export(self) -> None:
        os.environ.update(
            MASTER_ADDR=self.master_addr,
            MASTER_PORT=str(self.master_port),
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world_size),
            LOCAL_RANK=str(self.local_rank),
        )


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def local_env() -> DistEnv:
    """A world of one in the current process (a learner group with no learner actors)."""
    return DistEnv(rank=0, world_size=1, master_addr=LOOPBACK, master_port=free_port())


def node_address() -> tuple[str, int]:
    """(this Ray node's IP, a free port on it): what rank 0 offers the others to join."""
    import ray

    ip = ray.util.get_node_ip_address()
    return ip, free_port(ip)
