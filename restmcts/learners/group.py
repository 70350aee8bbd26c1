"""LearnerGroup: one role's learners as a DeepSpeed data-parallel world, or in-process.

    group = LearnerGroup(cfg, "policy")          # or "prm"
    result = group.train(init_path, replay_paths, out_path)
    group.send_weights(spec, manifest)           # to the inference servers (restmcts.weights)
    group.shutdown()

`learners.num_learners == 0` trains in the calling process (a world of one, as RLlib's
LearnerGroup does with zero learners); N > 0 starts N `LearnerActor`s in one placement group
(one bundle per rank) that form a gloo (CPU) or NCCL (GPU) world: rank 0 picks a free port on
its node and every rank joins it.

Data path: the driver reads the replay with pyarrow (restmcts.replay), validates it, shuffles
it with learners.seed and slices it per rank (`engine.shard`) before `ray.put`, so each actor
receives only its slice.

Empty replay: `train` is a no-op that still writes `out_path` (the init weights, unchanged) and
returns `samples == 0`, so an iteration that found nothing to learn keeps the previous model and
the loop goes on. A missing replay file, a bad value in values.parquet or an init checkpoint
that does not exist raise before any actor starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import ray
from ray.util.placement_group import remove_placement_group

from restmcts.actors.runtime import DistEnv, actor_options, local_env, node_address, placement_group
from restmcts.config import Config
from restmcts.learners.engine import Learner, TrainResult, remove_stale_saves, shard
from restmcts.learners.policy import PolicyLearner
from restmcts.learners.prm import PRMLearner
from restmcts.weights import GroupSpec, Manifest

Role = Literal["policy", "prm"]
LEARNERS: dict[str, type[Learner[Any, Any]]] = {"policy": PolicyLearner, "prm": PRMLearner}
INIT_KEYS = {"policy": "model.policy", "prm": "model.prm"}  # the config key a role's first init comes from


def learner_class(role: str) -> type[Learner[Any, Any]]:
    if role not in LEARNERS:
        raise ValueError(f"unknown learner role {role!r}; valid roles: {', '.join(LEARNERS)}")
    return LEARNERS[role]


def make_learner(cfg: Config, role: str) -> Learner[Any, Any]:
    return learner_class(role)(cfg)


class LearnerActor:
    """One rank of a group as a Ray actor: a thin wrapper around the role's Learner."""

    def __init__(self, cfg: Config, role: str) -> None:
        self.learner = make_learner(cfg, role)

    def address(self) -> tuple[str, int]:
        return node_address()

    def train(self, env: DistEnv, samples: list[Any], init_path: str, out_path: str,
              total_samples: int) -> TrainResult:
        return self.learner.train(env, samples, init_path, out_path, total_samples)

    def manifest(self, version: int, bucket_mb: float) -> Manifest:
        return self.learner.manifest(version, bucket_mb)

    def send_weights(self, spec: GroupSpec, manifest: Manifest) -> None:
        self.learner.send_weights(spec, manifest)

    def put_weights(self, manifest: Manifest) -> list[Any]:
        return self.learner.put_weights(manifest)


RemoteLearner = ray.remote(LearnerActor)


class LearnerGroup:
    """The learners of one role (policy SFT or PRM regression); see the module docstring."""

    def __init__(self, cfg: Config, role: Role) -> None:
        self.cfg = cfg
        self.role = role
        self.learner_cls = learner_class(role)
        lc = cfg.learners
        if lc.precision == "fp16" and not _has_gpu(lc.num_learners, lc.num_gpus):
            raise ValueError("learners.precision: fp16 needs a GPU (learners.num_gpus > 0); use bf16 or fp32 on CPU")
        self.local: Learner[Any, Any] | None = None
        self.actors: list[Any] = []
        self.pg: Any = None
        if lc.num_learners == 0:
            self.local = make_learner(cfg, role)
            return
        self.pg = placement_group(lc.num_learners, lc.num_cpus, lc.num_gpus,
                                  fix="Lower learners.num_learners, learners.num_cpus or learners.num_gpus")
        self.actors = [
            RemoteLearner.options(**actor_options(lc.num_cpus, lc.num_gpus, self.pg, rank)).remote(cfg, role)
            for rank in range(lc.num_learners)
        ]

    @property
    def world_size(self) -> int:
        return max(len(self.actors), 1)

    def train(self, init_path: str, replay_paths: Sequence[str], out_path: str) -> TrainResult:
        """Load `init_path`, train for the configured epochs on the replay, save to `out_path`."""
        check_init(init_path, self.role)
        samples = self.learner_cls.read_samples(list(replay_paths))
        slices = shard(samples, self.world_size, self.cfg.learners.seed, min_per_rank=self.cfg.learners.grad_accum)
        if self.local is not None:
            return self.local.train(local_env(), slices[0], init_path, out_path, len(samples))
        master_addr, master_port = ray.get(self.actors[0].address.remote())
        refs = [
            actor.train.remote(DistEnv(rank, self.world_size, master_addr, master_port), ray.put(part),
                               init_path, out_path, len(samples))
            for rank, (actor, part) in enumerate(zip(self.actors, slices, strict=True))
        ]
        results: list[TrainResult] = self._get_all(refs)
        digests = tuple(d for r in results for d in r.weights_digests)
        if len(set(digests)) != 1:
            raise RuntimeError(f"{self.role} learners finished with different weights on different ranks: {digests}")
        return dataclasses.replace(results[0], truncated=sum(r.truncated for r in results), weights_digests=digests)

    # -- the trained weights, for the inference servers (sending: every rank takes part, ZeRO-3 gathers)

    def sync_address(self) -> tuple[str, int]:
        """Where rank 0 hosts a weight-sync group: its node's IP and a free port there."""
        return node_address() if self.local is not None else ray.get(self.actors[0].address.remote())

    def manifest(self, version: int, bucket_mb: float) -> Manifest:
        """Names, dtypes and whole shapes of what a push sends; rank 0 alone reads them (no gather)."""
        if self.local is not None:
            return self.local.manifest(version, bucket_mb)
        return self._get_all([self.actors[0].manifest.remote(version, bucket_mb)])[0]

    def send_weights(self, spec: GroupSpec, manifest: Manifest) -> None:
        """Broadcast the trained weights from rank 0 to the group's other members; returns when sent."""
        if self.local is not None:
            self.local.send_weights(spec, manifest)
        else:
            self._get_all([a.send_weights.remote(spec, manifest) for a in self.actors])

    def put_weights(self, manifest: Manifest) -> list[Any]:
        """Object-store refs to the trained weights, one per bucket of `manifest` (owned by rank 0:
        valid until shutdown)."""
        if self.local is not None:
            return self.local.put_weights(manifest)
        return self._get_all([a.put_weights.remote(manifest) for a in self.actors])[0]

    def shutdown(self) -> None:
        """Stop the actors and free the placement group (in-process: drop the engine)."""
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.pg is not None:
            remove_placement_group(self.pg)
            self.pg = None
        self.local = None

    def _get_all(self, refs: list[Any]) -> list[Any]:
        """Results of one call on every rank; the first failure stops the group (its peers would
        otherwise wait in a collective until the process-group timeout)."""
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])
            except Exception:
                self.shutdown()
                raise
        return ray.get(refs)


def check_init(path: str, role: str) -> None:
    """A local-looking init path that does not exist fails here, naming the config key."""
    p = Path(path)
    looks_local = path.startswith((".", "/", "~")) or len(p.parts) > 2 or p.parts[:1] == ("runs",)
    if looks_local and not p.expanduser().exists():
        key = INIT_KEYS[role]
        raise FileNotFoundError(
            f"{key}: no checkpoint to train the {role} from at {path!r}. Build the bootstrap models "
            f"(jobs/bootstrap.py), or set {key} to a local checkpoint folder or a hub name."
        )


def _has_gpu(num_learners: int, num_gpus: float) -> bool:
    if num_learners > 0:
        return num_gpus > 0
    import torch

    return torch.cuda.is_available()


def train_phase(cfg: Config, role: Role, init_path: str, replay_paths: Sequence[str], out_path: str,
                on_restart: Any = None) -> TrainResult:
    """`train_live`, then the learners stop."""
    result, group = train_live(cfg, role, init_path, replay_paths, out_path, on_restart)
    group.shutdown()
    return result


def train_live(cfg: Config, role: Role, init_path: str, replay_paths: Sequence[str], out_path: str,
               on_restart: Any = None) -> tuple[TrainResult, LearnerGroup]:
    """One train phase that survives learner deaths: a dead rank stops the group and the phase
    starts over from `init_path` with new actors, up to `learners.max_restarts` times. The
    checkpoint is written to a temporary folder and renamed, so a death never leaves a partial
    `out_path`; what a killed save left beside it is removed before each start.
    `on_restart(attempt, error)` is called before each new start. The group comes back alive,
    holding the trained weights, for the caller to send to the servers and then shut down."""
    for attempt in range(cfg.learners.max_restarts + 1):
        remove_stale_saves(out_path)
        group = LearnerGroup(cfg, role)
        try:
            result = group.train(init_path, replay_paths, out_path)
            return dataclasses.replace(result, restarts=attempt), group
        except ray.exceptions.RayActorError as err:
            group.shutdown()
            if attempt == cfg.learners.max_restarts:
                raise RuntimeError(f"{role} training: learners died {attempt + 1} times "
                                   f"(learners.max_restarts={cfg.learners.max_restarts}); last error: {err}") from err
            if on_restart is not None:
                on_restart(attempt + 1, err)
        except BaseException:
            group.shutdown()
            raise
    raise AssertionError("unreachable")
