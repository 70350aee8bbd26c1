"""A weight-sync process group: one sender (rank 0, a learner) broadcasts named tensors in buckets
to every receiver (ranks 1.., the server replicas).

The group is a torch.distributed process group built directly on its own TCP store (rank 0 hosts
it at `GroupSpec.host:port`), not through `init_process_group`: a learner is already rank 0 of its
training world, and a server replica belongs to no world at all. Gloo moves CPU tensors, NCCL GPU
tensors. The tensors' names, dtypes and shapes travel beforehand in a `Manifest` (through Ray, a
few KB), so a bucket on the wire is only bytes: consecutive tensors packed into one flat uint8
buffer of at most `bucket_bytes` (a larger tensor gets a bucket of its own). A receiver holds one
bucket at a time while it unpacks, and the sender never more than one packed bucket besides the
model itself.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

ALIGN = 16  # byte offset of every tensor inside a bucket: any dtype can view its slice
Backend = Literal["gloo", "nccl"]


@dataclass(frozen=True)
class TensorMeta:
    name: str
    dtype: str  # torch dtype name without the "torch." prefix: "float32", "bfloat16", ...
    shape: tuple[int, ...]
    nbytes: int


Bucket = list[tuple[TensorMeta, int]]  # tensors and their byte offsets in one flat buffer


@dataclass(frozen=True)
class Manifest:
    """What one sync sends: the tensors in order and how they are cut into buckets."""

    version: int
    tensors: tuple[TensorMeta, ...]
    bucket_bytes: int

    @classmethod
    def of(cls, named: Iterable[tuple[str, torch.Tensor]], version: int, bucket_mb: float) -> Manifest:
        metas = tuple(TensorMeta(name, str(t.dtype).removeprefix("torch."), tuple(t.shape),
                                 t.numel() * t.element_size()) for name, t in named)
        return cls(version, metas, max(1, int(bucket_mb * 2**20)))

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self.tensors)

    def buckets(self) -> list[Bucket]:
        """Consecutive tensors with their byte offsets, each list one bucket of at most
        `bucket_bytes` (or a single larger tensor)."""
        out: list[Bucket] = []
        current: Bucket = []
        used = 0
        for meta in self.tensors:
            if current and used + meta.nbytes > self.bucket_bytes:
                out.append(current)
                current, used = [], 0
            current.append((meta, used))
            used = _aligned(used + meta.nbytes)
        if current:
            out.append(current)
        return out


def bucket_size(bucket: Bucket) -> int:
    last, offset = bucket[-1]
    return offset + last.nbytes


def pack(tensors: Mapping[str, torch.Tensor], bucket: Bucket, device: Any = "cpu") -> torch.Tensor:
    """One bucket's tensors copied into a new flat uint8 buffer on `device`."""
    import torch

    flat = torch.empty(bucket_size(bucket), dtype=torch.uint8, device=device)
    for meta, offset in bucket:
        t = tensors[meta.name].detach()
        if str(t.dtype).removeprefix("torch.") != meta.dtype or tuple(t.shape) != meta.shape:
            raise ValueError(f"weight sync: {meta.name} is {t.dtype} {tuple(t.shape)}, the manifest "
                             f"says {meta.dtype} {meta.shape}")
        flat[offset:offset + meta.nbytes].copy_(t.contiguous().reshape(-1).view(torch.uint8))
    return flat


def unpack(flat: torch.Tensor, bucket: Bucket) -> Iterator[tuple[str, torch.Tensor]]:
    """A packed bucket's tensors: views into `flat`, no copy."""
    import torch

    for meta, offset in bucket:
        yield meta.name, flat[offset:offset + meta.nbytes].view(getattr(torch, meta.dtype)).reshape(meta.shape)


@dataclass(frozen=True)
class GroupSpec:
    """Where and how the members of one sync meet; rank 0 hosts the store at host:port."""

    host: str
    port: int
    world_size: int  # the sender and every receiver
    backend: Backend = "gloo"
    timeout_s: float = 600.0


class WeightGroup:
    """This process's membership of one sync's group (`join`), then `send` or `receive`, then `close`."""

    def __init__(self, spec: GroupSpec, rank: int, store: Any, group: Any) -> None:
        self.spec, self.rank = spec, rank
        self._store, self._group = store, group

    @classmethod
    def join(cls, spec: GroupSpec, rank: int) -> WeightGroup:
        """Block until all `spec.world_size` members joined (rank 0 first opens the store)."""
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=spec.timeout_s)
        store = dist.TCPStore(spec.host, spec.port, spec.world_size, rank == 0, timeout=timeout)
        if spec.backend == "nccl":
            group = dist.ProcessGroupNCCL(store, rank, spec.world_size)
        elif spec.backend == "gloo":
            group = dist.ProcessGroupGloo(store, rank, spec.world_size, timeout)
        else:
            raise ValueError(f"sync.backend: unknown backend {spec.backend!r}; valid: gloo, nccl")
        return cls(spec, rank, store, group)

    def send(self, named: Iterable[tuple[str, torch.Tensor]], manifest: Manifest) -> None:
        """Rank 0: broadcast the tensors `manifest` lists, in its order and buckets."""
        tensors = dict(named)
        for bucket in manifest.buckets():
            device = tensors[bucket[0][0].name].device if self.spec.backend == "nccl" else "cpu"
            self._broadcast(pack(tensors, bucket, device))

    def receive(self, manifest: Manifest, device: Any = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
        """Ranks 1..: the manifest's tensors as they arrive, views into a bucket received on
        `device` (a new buffer per bucket: the tensors stay valid after the next one arrives)."""
        import torch

        for bucket in manifest.buckets():
            flat = torch.empty(bucket_size(bucket), dtype=torch.uint8, device=device)
            self._broadcast(flat)
            yield from unpack(flat, bucket)

    def close(self) -> None:
        """Wait for every member (nobody tears the store down under a peer), then leave."""
        try:
            self._group.barrier().wait()
        finally:
            self._group.shutdown()
            self._group = self._store = None

    def _broadcast(self, flat: torch.Tensor) -> None:
        import torch.distributed as dist

        opts = dist.BroadcastOptions()
        opts.rootRank = 0
        self._group.broadcast([flat], opts).wait()


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN
