"""Where Ray runs and how actors are placed: the one module that knows env vars and bundles.

Jobs call `init_ray(cfg.ray)`: it attaches to a cluster when one is given (RAY_ADDRESS, a
`ray job submit` driver, or `ray.address`), and otherwise starts a local Ray bound to 127.0.0.1.
"""

from __future__ import annotations

import os
from typing import Any

from restmcts.config import RayConfig

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
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
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


def gpu_bundles(count: int, num_cpus: float, num_gpus: float, resource: str = "") -> Any:
    """A placement group of `count` bundles, each with its GPU(s) (and one unit of `resource`
    when given); None on CPU-only runs."""
    if num_gpus <= 0:
        return None
    import ray
    from ray.util.placement_group import placement_group

    bundle = {"CPU": num_cpus, "GPU": num_gpus, **custom_resources(resource)}
    pg = placement_group([dict(bundle) for _ in range(count)], strategy="PACK")
    ray.get(pg.ready())
    return pg
