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

When every member sits on the sender's node (they all see the file the sender offers in
/dev/shm), the bytes skip the network stack: the sender copies the tensors, laid end to end, into a
ring of two shared-memory chunks and the receivers copy them out, the TCP store only saying which
chunk is full and which is free (no process group is built then). That is two memory copies per
byte, and the sender fills one chunk while the receivers empty the other. A receiver may name
where each tensor goes (`into`, e.g. the live parameter), so no copy of the model is ever
allocated on its side.
"""

from __future__ import annotations

import datetime
import mmap
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
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

    def stream(self) -> Bucket:
        """Every tensor with its byte offset when all of them are laid end to end (the layout the
        shared-memory ring moves)."""
        out: Bucket = []
        used = 0
        for meta in self.tensors:
            out.append((meta, used))
            used = _aligned(used + meta.nbytes)
        return out


def bucket_size(bucket: Bucket) -> int:
    last, offset = bucket[-1]
    return offset + last.nbytes


def pack(tensors: Mapping[str, torch.Tensor], bucket: Bucket, device: Any = "cpu") -> torch.Tensor:
    """One bucket's tensors copied into a new flat uint8 buffer on `device`."""
    import torch

    flat = torch.empty(bucket_size(bucket), dtype=torch.uint8, device=device)
    for meta, offset in bucket:
        flat[offset:offset + meta.nbytes].copy_(_bytes(tensors[meta.name], meta))
    return flat


def _bytes(tensor: torch.Tensor, meta: TensorMeta) -> torch.Tensor:
    """`tensor`'s bytes as a flat uint8 tensor (a view when it is contiguous), after checking it
    is what the manifest says."""
    import torch

    t = tensor.detach()
    if str(t.dtype).removeprefix("torch.") != meta.dtype or tuple(t.shape) != meta.shape:
        raise ValueError(f"weight sync: {meta.name} is {t.dtype} {tuple(t.shape)}, the manifest "
                         f"says {meta.dtype} {meta.shape}")
    return t.contiguous().reshape(-1).view(torch.uint8)


def shared_bytes(buffer: Any) -> torch.Tensor:
    """A flat uint8 tensor over `buffer` (an mmap, or an array in Ray's object store), no copy.
    Torch warns when the buffer is read-only; the callers only read from those."""
    import warnings

    import numpy as np
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.frombuffer(buffer, dtype=np.uint8))


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
    # gloo only: a file name the sender offers in /dev/shm; when every receiver sees it, the bytes
    # go through a shared-memory ring of two chunks of `shm_chunk_bytes` ("" = always the network)
    shm_name: str = ""
    shm_chunk_bytes: int = 16 * 2**20


Into = Callable[["TensorMeta"], "torch.Tensor | None"]  # where a received tensor goes (None: a new one)


class WeightGroup:
    """This process's membership of one sync's group (`join`), then `send` or `receive`, then `close`."""

    def __init__(self, spec: GroupSpec, rank: int, store: Any, group: Any, ring: _Ring | None = None) -> None:
        self.spec, self.rank = spec, rank
        self._store, self._group = store, group
        self._ring = ring

    @classmethod
    def join(cls, spec: GroupSpec, rank: int) -> WeightGroup:
        """Block until all `spec.world_size` members joined (rank 0 first opens the store)."""
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=spec.timeout_s)
        offer = spec.shm_name and spec.backend == "gloo" and spec.world_size > 1
        ring = _Ring.create(spec) if offer and rank == 0 else None  # before the store: seen by the time a peer joins
        try:
            if rank != 0:
                _await_listener(spec.host, spec.port, spec.timeout_s)
            store = dist.TCPStore(spec.host, spec.port, spec.world_size, rank == 0, timeout=timeout)
            if offer:
                ring = _Ring.agree(spec, rank, store, ring)
            group = None if ring is not None else _process_group(spec, rank, store, timeout)
        except BaseException:
            if ring is not None:
                ring.close()
            raise
        return cls(spec, rank, store, group, ring)

    @property
    def transport(self) -> str:
        """"shm" when the bytes go through the shared-memory ring, else the backend's name."""
        return "shm" if self._ring is not None else self.spec.backend

    def send(self, named: Iterable[tuple[str, torch.Tensor]], manifest: Manifest) -> None:
        """Rank 0: send the tensors `manifest` lists, in its order (and buckets, over the network)."""
        tensors = dict(named)
        if self._ring is not None:
            self._ring.send(self._store, tensors, manifest, self.spec.world_size)
            return
        for bucket in manifest.buckets():
            device = tensors[bucket[0][0].name].device if self.spec.backend == "nccl" else "cpu"
            self._broadcast(pack(tensors, bucket, device))

    def receive(self, manifest: Manifest, device: Any = "cpu",
                into: Into | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """Ranks 1..: the manifest's tensors as they arrive. Each lands in `into(meta)` when that
        gives a tensor (contiguous, the manifest's dtype and shape), else in new memory on
        `device`; a tensor stays valid after the next one arrives."""
        import torch

        if self._ring is not None:
            yield from self._ring.receive(self._store, manifest, self.rank, _destination(into, device))
            return
        for bucket in manifest.buckets():
            flat = torch.empty(bucket_size(bucket), dtype=torch.uint8, device=device)
            self._broadcast(flat)
            for (meta, _), (name, view) in zip(bucket, unpack(flat, bucket), strict=True):
                target = into(meta) if into is not None else None
                yield name, view if target is None else target.copy_(view)

    def close(self) -> None:
        """Wait for every member (nobody tears the store down under a peer), then leave."""
        try:
            if self._group is not None:
                self._group.barrier().wait()
            elif self.rank == 0:  # the ring needs no process group: the store is the barrier
                self._store.wait([f"restmcts/closed/{r}" for r in range(1, self.spec.world_size)])
            else:
                self._store.set(f"restmcts/closed/{self.rank}", b"")
        finally:
            if self._group is not None:
                self._group.shutdown()
            self._group = self._store = None
            if self._ring is not None:
                self._ring.close()
                self._ring = None

    def _broadcast(self, flat: torch.Tensor) -> None:
        import torch.distributed as dist

        opts = dist.BroadcastOptions()
        opts.rootRank = 0
        self._group.broadcast([flat], opts).wait()


class _Ring:
    """`SLOTS` chunks of a /dev/shm file, mapped by the sender and by every receiver on its node.

    Chunk k of the stream goes into slot k % SLOTS; the sender sets `ready/k` once the slot is full
    and waits for `done/k-SLOTS/<rank>` from every receiver before it fills the same slot again."""

    def __init__(self, path: str, chunk: int, buf: mmap.mmap) -> None:
        self.path, self.chunk, self._buf = path, chunk, buf
        self.slots = shared_bytes(buf)  # a receiver's mapping is read-only, and it only reads

    @classmethod
    def create(cls, spec: GroupSpec) -> _Ring:
        path = os.path.join(SHM_DIR, spec.shm_name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, SLOTS * spec.shm_chunk_bytes)
            return cls(path, spec.shm_chunk_bytes, mmap.mmap(fd, SLOTS * spec.shm_chunk_bytes))
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)

    @classmethod
    def agree(cls, spec: GroupSpec, rank: int, store: Any, ring: _Ring | None) -> _Ring | None:
        """All members learn whether every receiver mapped the sender's file; the ring is used
        only then. The sender removes the file once everyone answered (mappings outlive it)."""
        if rank == 0:
            assert ring is not None
            keys = [f"restmcts/shm/{r}" for r in range(1, spec.world_size)]
            store.wait(keys)
            everyone = all(store.get(k) == b"1" for k in keys)
            ring.unlink()
            store.set("restmcts/shm", b"1" if everyone else b"0")
        else:
            ring = cls._open(spec)
            store.set(f"restmcts/shm/{rank}", b"1" if ring is not None else b"0")
        if store.get("restmcts/shm") == b"1":
            return ring
        if ring is not None:
            ring.close()
        return None

    @classmethod
    def _open(cls, spec: GroupSpec) -> _Ring | None:
        try:
            fd = os.open(os.path.join(SHM_DIR, spec.shm_name), os.O_RDONLY)
        except FileNotFoundError:  # another node: the network it is
            return None
        try:
            return cls("", spec.shm_chunk_bytes, mmap.mmap(fd, SLOTS * spec.shm_chunk_bytes, prot=mmap.PROT_READ))
        finally:
            os.close(fd)

    def send(self, store: Any, tensors: Mapping[str, torch.Tensor], manifest: Manifest, world_size: int) -> None:
        layout = manifest.stream()
        sources = {meta.name: _bytes(tensors[meta.name].cpu(), meta) for meta, _ in layout}
        chunks = self._chunks(layout)
        for k, pieces in enumerate(chunks):
            if k >= SLOTS:
                self._wait_done(store, k - SLOTS, world_size)
            slot = self._slot(k)
            for meta, at, lo, hi in pieces:
                slot[at:at + hi - lo].copy_(sources[meta.name][lo:hi])
            store.set(f"restmcts/ready/{k}", b"")
        for k in range(max(0, len(chunks) - SLOTS), len(chunks)):
            self._wait_done(store, k, world_size)

    def receive(self, store: Any, manifest: Manifest, rank: int,
                destination: Callable[[TensorMeta], torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
        import torch

        targets: dict[str, torch.Tensor] = {}
        for k, pieces in enumerate(self._chunks(manifest.stream())):
            store.wait([f"restmcts/ready/{k}"])
            slot = self._slot(k)
            complete = []
            for meta, at, lo, hi in pieces:
                if meta.name not in targets:
                    targets[meta.name] = destination(meta)
                flat = targets[meta.name].view(-1).view(torch.uint8)
                flat[lo:hi].copy_(slot[at:at + hi - lo])
                if hi == meta.nbytes:
                    complete.append(meta.name)
            store.set(f"restmcts/done/{k}/{rank}", b"")  # the slot is free again before anyone reads on
            for name in complete:
                yield name, targets.pop(name)

    def unlink(self) -> None:
        """Remove the sender's file (mappings outlive it); a receiver's ring has no path."""
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = ""

    def close(self) -> None:
        self.unlink()
        del self.slots
        self._buf.close()

    def _slot(self, k: int) -> torch.Tensor:
        return self.slots[(k % SLOTS) * self.chunk:(k % SLOTS + 1) * self.chunk]

    def _chunks(self, layout: Bucket) -> list[list[tuple[TensorMeta, int, int, int]]]:
        """For each chunk of the stream, the pieces it holds: (tensor, offset in the chunk, first
        and one-past-last byte of the tensor). Empty tensors ride in the chunk where they start."""
        out: list[list[tuple[TensorMeta, int, int, int]]] = []
        for meta, offset in layout:
            lo = 0
            while True:
                k, at = divmod(offset + lo, self.chunk)
                while len(out) <= k:
                    out.append([])
                hi = min(meta.nbytes, lo + self.chunk - at)
                out[k].append((meta, at, lo, hi))
                if hi == meta.nbytes:
                    break
                lo = hi
        return out

    @staticmethod
    def _wait_done(store: Any, k: int, world_size: int) -> None:
        store.wait([f"restmcts/done/{k}/{r}" for r in range(1, world_size)])


def _process_group(spec: GroupSpec, rank: int, store: Any, timeout: datetime.timedelta) -> Any:
    import torch.distributed as dist

    if spec.backend == "nccl":
        return dist.ProcessGroupNCCL(store, rank, spec.world_size)
    if spec.backend == "gloo":
        return dist.ProcessGroupGloo(store, rank, spec.world_size, timeout)
    raise ValueError(f"sync.backend: unknown backend {spec.backend!r}; valid: gloo, nccl")


SHM_DIR = "/dev/shm"
SLOTS = 2  # chunks in the ring: the sender may run this many chunks ahead of the slowest receiver


def _await_listener(host: str, port: int, timeout_s: float) -> None:
    """Return once rank 0's store accepts connections. A store client that finds nobody listening
    backs off for up to a second before it tries again, which alone would cost more than moving
    a 500 MB model; knocking every few milliseconds first avoids that."""
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"weight sync: nobody listens at {host}:{port} after {timeout_s:.0f} s "
                                   "(the sender never joined; sync.timeout_s)") from None
            time.sleep(0.005)


def _destination(into: Into | None, device: Any) -> Callable[[TensorMeta], torch.Tensor]:
    import torch

    def make(meta: TensorMeta) -> torch.Tensor:
        target = into(meta) if into is not None else None
        if target is None:
            target = torch.empty(meta.shape, dtype=getattr(torch, meta.dtype), device=device)
        return target

    return make


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN
