"""Where learner ranks run and how they find each other: env vars, ports, placement groups.

The one learner module that knows torch.distributed's environment variables and Ray's bundles.
A group of N learners is one placement group with one bundle per rank ({"CPU": num_cpus}, plus
{"GPU": num_gpus} when > 0); rank 0 picks a free port on its node and every rank joins the
world through MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE/LOCAL_RANK. LOCAL_RANK is always 0: Ray
gives each GPU actor its own CUDA_VISIBLE_DEVICES, so its GPU is device 0, and on CPU the value
only matters to DeepSpeed's shared-memory all-reduce, which it enables only when LOCAL_SIZE is
set (it is not).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

LOOPBACK = "127.0.0.1"
# How long a group waits for its placement group before saying which resources are missing.
PLACEMENT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DistEnv:
    """This rank's place in the data-parallel world, exported as torch.distributed env vars."""

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
    """A world of one in the current process (LearnerGroup with num_learners == 0)."""
    return DistEnv(rank=0, world_size=1, master_addr=LOOPBACK, master_port=free_port())


def node_address() -> tuple[str, int]:
    """(this Ray node's IP, a free port on it): what rank 0 offers the others to join."""
    import ray

    ip = ray.util.get_node_ip_address()
    return ip, free_port(ip)


def learner_bundles(count: int, num_cpus: float, num_gpus: float) -> list[dict[str, float]]:
    bundle = {"CPU": num_cpus, **({"GPU": num_gpus} if num_gpus > 0 else {})}
    return [dict(bundle) for _ in range(count)]


def create_placement_group(count: int, num_cpus: float, num_gpus: float) -> Any:
    """A ready placement group with one bundle per learner; a clear error if it never fits."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    bundles = learner_bundles(count, num_cpus, num_gpus)
    pg = placement_group(bundles, strategy="PACK")
    ready, _ = ray.wait([pg.ready()], timeout=PLACEMENT_TIMEOUT_S)
    if not ready:
        remove_placement_group(pg)
        raise RuntimeError(
            f"learners: no room for {count} learner bundle(s) of {bundles[0]} after {PLACEMENT_TIMEOUT_S:.0f}s; "
            f"cluster resources: {ray.cluster_resources()}. Lower learners.num_learners, "
            "learners.num_cpus or learners.num_gpus, or add nodes."
        )
    return pg


def bundle_options(pg: Any, index: int, num_cpus: float, num_gpus: float) -> dict[str, Any]:
    """Ray actor options that pin one learner to bundle `index` of the group's placement group."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=pg, placement_group_bundle_index=index
        ),
    }


def remove(pg: Any) -> None:
    from ray.util.placement_group import remove_placement_group

    remove_placement_group(pg)
