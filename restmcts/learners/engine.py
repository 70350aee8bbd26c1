"""The DeepSpeed plumbing both learners share: world setup, ds config, data split, train loop, export.

A `Learner` trains one model on this rank's slice of the replay. Its role (policy.py, prm.py)
says four things: which replay rows it learns from (`read_samples`, run by the driver), how to
load the model, how a row becomes token ids (`encode`), and the loss of a padded batch.

Data-parallel contract (what keeps collectives from hanging and ranks in sync):
- The driver shards: `shard(samples, world_size, ...)` shuffles the rows with `learners.seed`
  and deals them round-robin into equal-length slices, repeating rows from the start of the
  shuffled order to fill the last places (as torch's DistributedSampler pads).
- Each rank reshuffles its slice every epoch with a seed drawn from (learners.seed, epoch, rank)
  and splits it into micro-batches (at most `micro_batch_size` rows) whose count is a multiple of
  `grad_accum`; equal slice lengths give every rank the same number of optimizer steps.
- DeepSpeed averages gradients across ranks, so every rank applies the same update; the learner
  hashes the final weights on each rank and the group checks the hashes agree.

An optimizer step is `grad_accum` micro-batches on every rank; its metrics (`StepMetrics`) are
summed over ranks with one all-reduce per step.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

from restmcts.actors.runtime import DistEnv
from restmcts.config import Config, LearnersConfig
from restmcts.progress import progress
from restmcts.prompt import PromptFormat
from restmcts.weights import GroupSpec, Manifest

S = TypeVar("S")  # a replay row (Trace, ValueRecord)
E = TypeVar("E")  # that row encoded as token ids (SFTExample, ValueExample)

IGNORE_INDEX = -100  # label of a token that carries no loss


@dataclass(frozen=True)
class StepMetrics:
    """One optimizer step, summed over all ranks."""

    step: int  # optimizer step, from 1
    epoch: int  # from 0
    loss: float  # mean micro-batch loss of the step over all ranks
    samples: int  # rows in the step, all ranks (padding repeats included)
    tokens: int  # non-pad input tokens in the step, all ranks
    seconds: float  # wall time of the step on rank 0
    samples_per_s: float
    tokens_per_s: float
    lr: float = 0.0  # the learning rate the step used


@dataclass(frozen=True)
class TrainResult:
    """What one `train` call did; `dataclasses.asdict` gives a JSON-ready record."""

    role: str  # "policy" | "prm"
    init_path: str
    out_path: str  # the saved checkpoint (written even when samples == 0)
    samples: int  # replay rows trained on; 0 = nothing to learn, the init weights are saved unchanged
    world_size: int
    epochs: int
    steps: int  # optimizer steps
    epoch_losses: tuple[float, ...]  # mean step loss per epoch
    final_loss: float | None  # loss of the last step (None without steps)
    seconds: float  # wall time of the whole call on rank 0 (load, initialize, train, save)
    train_seconds: float  # time inside optimizer steps
    samples_per_s: float  # rows per second inside optimizer steps, all ranks
    tokens_per_s: float
    truncated: int  # rows cut to learners.max_seq_len
    weights_digests: tuple[str, ...]  # sha256 of the final weights on each rank; the group checks they agree
    history: tuple[StepMetrics, ...]
    restarts: int = 0  # times the phase started over after a learner died (train_phase)


@dataclass
class Batch:
    """Padded tensors of one micro-batch, as the role's `loss` reads them."""

    tensors: dict[str, torch.Tensor]
    samples: int
    tokens: int  # non-pad input tokens

    def to(self, device: Any) -> Batch:
        return Batch({k: v.to(device) for k, v in self.tensors.items()}, self.samples, self.tokens)


# --------------------------------------------------------------------------- world and config


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(env: DistEnv) -> None:
    """Join the data-parallel world described by `env` (a no-op when this process already has)."""
    import deepspeed
    import torch.distributed as dist

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    clear_stale_build_locks()
    if dist.is_initialized():
        if dist.get_world_size() != env.world_size or dist.get_rank() != env.rank:
            raise RuntimeError(
                f"this process is already rank {dist.get_rank()} of {dist.get_world_size()}; "
                f"cannot also be rank {env.rank} of {env.world_size}"
            )
        return
    env.export()
    deepspeed.init_distributed(dist_backend=backend(), rank=env.rank, world_size=env.world_size, verbose=False)


STALE_BUILD_LOCK_S = 600.0  # DeepSpeed's shared-memory comm op builds in about 25 s


def clear_stale_build_locks() -> None:
    """Remove the lock of a DeepSpeed op build that a killed process left behind. DeepSpeed builds
    its shared-memory comm op on first use under torch's extensions folder, and a build killed
    midway leaves a `lock` file that makes every later build wait for it forever."""
    import sys

    from torch.utils.cpp_extension import get_default_build_root

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    for lock in [*root.glob("deepspeed_*/lock"), *root.glob("*/deepspeed_*/lock")]:
        try:
            age = time.time() - lock.stat().st_mtime
            if age > STALE_BUILD_LOCK_S:
                lock.unlink()
                print(f"[learners] removed {lock}: left {age / 60:.0f} min ago by a build that never finished",
                      file=sys.stderr)
        except FileNotFoundError:
            pass


def ds_config(cfg: LearnersConfig, lr: float) -> dict[str, Any]:
    """The DeepSpeed config for one learner (torch AdamW: no JIT-built optimizer ops)."""
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": lr, "weight_decay": cfg.weight_decay, "torch_adam": True},
        },
        "gradient_clipping": cfg.max_grad_norm,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": cfg.precision == "bf16"},
        "fp16": {"enabled": cfg.precision == "fp16"},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def scheduled_lr(cfg: LearnersConfig, peak: float, step: int, total: int) -> float:
    """The learning rate of optimizer step `step` (from 0) of `total`: `peak` throughout for
    "constant"; otherwise peak * (step + 1) / w over the first w = warmup_ratio * total steps, then
    for "warmup_linear" down in equal steps to peak / (total - w + 1) at the last one, and for
    "warmup_cosine" down a half cosine to peak / 10 at the last one."""
    if cfg.lr_schedule == "constant" or total <= 0:
        return peak
    warmup = max(1, round(cfg.warmup_ratio * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    if cfg.lr_schedule == "warmup_cosine":
        done = (step - warmup + 1) / (total - warmup)  # in (0, 1]: 1 at the last step
        return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * done)))
    return peak * (total - step) / (total - warmup + 1)


# --------------------------------------------------------------------------- data split


def shard(samples: Sequence[S], world_size: int, seed: int, min_per_rank: int = 1) -> list[list[S]]:
    """Equal-length slices of `samples`, one per rank (see the module docstring); [] when empty."""
    if not samples:
        return [[] for _ in range(world_size)]
    order = np.random.default_rng(seed).permutation(len(samples))
    per_rank = max(math.ceil(len(samples) / world_size), min_per_rank)
    padded = np.resize(order, per_rank * world_size)  # repeats the shuffled order to fill
    return [[samples[i] for i in padded[r::world_size]] for r in range(world_size)]


def epoch_steps(count: int, epoch: int, rank: int, seed: int, micro_batch_size: int,
                grad_accum: int) -> list[list[np.ndarray]]:
    """This rank's optimizer steps for one epoch: each a list of `grad_accum` index arrays.

    The micro-batch count is the smallest multiple of `grad_accum` that keeps every micro-batch
    at or under `micro_batch_size`; rows are spread evenly over them.
    """
    if count == 0:
        return []
    n_micro = grad_accum * math.ceil(math.ceil(count / micro_batch_size) / grad_accum)
    if count < n_micro:
        raise ValueError(f"{count} rows cannot fill {n_micro} micro-batches; shard with min_per_rank={grad_accum}")
    order = np.random.default_rng([seed, epoch, rank]).permutation(count)
    parts = np.array_split(order, n_micro)
    return [parts[i:i + grad_accum] for i in range(0, n_micro, grad_accum)]


def require_replay(path: str) -> None:
    from restmcts import storage

    if not storage.exists(path):
        raise FileNotFoundError(f"replay file {path!r} does not exist")


# --------------------------------------------------------------------------- the learner


class Learner(ABC, Generic[S, E]):
    """One rank of a learner group: loads a checkpoint, trains it with DeepSpeed, saves it."""

    role: ClassVar[str]

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.engine: Any = None
        self.tokenizer: Any = None
        self.fmt = PromptFormat.from_config(cfg.data)

    # -- what a role provides

    @classmethod
    @abstractmethod
    def read_samples(cls, paths: Sequence[str]) -> list[S]:
        """The replay rows this role learns from (runs on the driver; raises on bad data)."""

    @abstractmethod
    def load_model(self, path: str) -> Any: ...

    @abstractmethod
    def encode(self, sample: S) -> tuple[E, bool]:
        """Token ids of one row, and whether they were cut to learners.max_seq_len."""

    @abstractmethod
    def collate(self, examples: Sequence[E]) -> Batch: ...

    @abstractmethod
    def loss(self, engine: Any, batch: Batch) -> torch.Tensor: ...

    @property
    @abstractmethod
    def lr(self) -> float: ...

    @property
    @abstractmethod
    def epochs(self) -> int: ...

    # -- the verbs

    def train(self, env: DistEnv, samples: Sequence[S], init_path: str, out_path: str,
              total_samples: int) -> TrainResult:
        """Train on this rank's slice for the configured epochs; rank 0 saves to `out_path`.

        Every rank of the world must call this at once with equal-length slices (`shard`).
        Torch uses learners.num_cpus threads meanwhile (the CPUs a learner reserves), in-process
        too, and a CPU random state seeded from learners.seed (the caller's is left as it was).
        """
        lc = self.cfg.learners
        with torch_threads(max(1, int(lc.num_cpus))), torch.random.fork_rng(devices=[]):
            torch.manual_seed(lc.seed)
            return self._train(env, samples, init_path, out_path, total_samples)

    def _train(self, env: DistEnv, samples: Sequence[S], init_path: str, out_path: str,
               total_samples: int) -> TrainResult:
        import deepspeed

        start = time.perf_counter()
        init_distributed(env)
        lc = self.cfg.learners
        self.load_tokenizer(init_path)
        self.engine = None
        model = self.load_model(init_path)
        model.train()
        encoded = [self.encode(s) for s in samples]
        examples = [e for e, _ in encoded]
        truncated = sum(cut for _, cut in encoded)
        self.engine, *_ = deepspeed.initialize(
            model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
            config=ds_config(lc, self.lr),
        )
        per_epoch = len(epoch_steps(len(examples), 0, env.rank, lc.seed, lc.micro_batch_size, lc.grad_accum))
        total = per_epoch * self.epochs
        history: list[StepMetrics] = []
        bar = progress(total, f"{self.role} learner", unit="steps") if env.rank == 0 else None
        for epoch in range(self.epochs if examples else 0):
            for step in epoch_steps(len(examples), epoch, env.rank, lc.seed, lc.micro_batch_size, lc.grad_accum):
                lr = scheduled_lr(lc, self.lr, len(history), total)
                history.append(self._step(step, examples, epoch, len(history) + 1, lr))
                if bar is not None:
                    m = history[-1]
                    bar.update(1, epoch=f"{epoch + 1}/{self.epochs}", loss=f"{m.loss:.4f}",
                               **{"samples/s": f"{m.samples_per_s:.1f}"})
        if bar is not None:
            bar.close()
        digest = self._save(out_path) if env.rank == 0 else self._gather(keep=False)[1]
        train_seconds = sum(m.seconds for m in history)
        epoch_losses = tuple(
            float(np.mean([m.loss for m in history if m.epoch == e])) for e in sorted({m.epoch for m in history})
        )
        return TrainResult(
            role=self.role, init_path=init_path, out_path=out_path, samples=total_samples,
            world_size=env.world_size, epochs=self.epochs if examples else 0, steps=len(history),
            epoch_losses=epoch_losses, final_loss=history[-1].loss if history else None,
            seconds=time.perf_counter() - start, train_seconds=train_seconds,
            samples_per_s=sum(m.samples for m in history) / max(train_seconds, 1e-9),
            tokens_per_s=sum(m.tokens for m in history) / max(train_seconds, 1e-9),
            truncated=truncated, weights_digests=(digest,), history=tuple(history),
        )

    def load_tokenizer(self, path: str) -> None:
        """Load the checkpoint's tokenizer and the prompt format that uses it (before `encode`)."""
        from restmcts.checkpoints import load_tokenizer

        self.tokenizer = load_tokenizer(path)
        self.fmt = PromptFormat.from_config(self.cfg.data, self.tokenizer)

    @contextmanager
    def live_weights(self) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """The trained module's own tensors (not copies), keyed as in the saved checkpoint, tied
        copies left out; gathered whole under ZeRO-3, where every rank must enter at once."""
        import deepspeed

        module = self._trained_module()
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            yield [(name, tensor.detach()) for name, tensor in untied_state(module)]

    def send_weights(self, spec: GroupSpec, manifest: Manifest) -> None:
        """Rank 0 broadcasts the trained weights to the weight-sync group `spec` (the servers);
        the other ranks only take part in the ZeRO-3 gather."""
        import torch.distributed as dist

        from restmcts.weights import WeightGroup

        with self.live_weights() as named:
            if dist.get_rank() == 0:
                group = WeightGroup.join(spec, 0)
                try:
                    group.send(named, manifest)
                finally:
                    group.close()

    def manifest(self, version: int, bucket_mb: float) -> Manifest:
        """What `live_weights` holds (names, dtypes, whole shapes), read without gathering: a
        ZeRO-3 parameter knows its whole shape (`ds_shape`), so a push gathers only to send."""
        import torch

        from restmcts.weights import Manifest

        module = self._trained_module()
        whole = {name: tuple(p.ds_shape) for name, p in module.named_parameters(remove_duplicate=False)
                 if hasattr(p, "ds_shape")}
        return Manifest.of(((name, torch.empty(whole[name], dtype=t.dtype, device="meta") if name in whole else t)
                            for name, t in untied_state(module)), version, bucket_mb)

    def put_weights(self, manifest: Manifest) -> list[Any]:
        """Rank 0: the trained weights in Ray's object store, one object per bucket of `manifest`
        (a flat uint8 array each, which receivers map without a copy); [] on the other ranks."""
        import ray
        import torch.distributed as dist

        from restmcts.weights.group import pack

        with self.live_weights() as named:
            if dist.get_rank() != 0:
                return []
            tensors = dict(named)
            return [ray.put(pack(tensors, bucket).numpy()) for bucket in manifest.buckets()]

    # -- internals

    def _trained_module(self) -> Any:
        if self.engine is None:
            raise RuntimeError(f"{self.role} learner: call train() before reading its weights")
        return self.engine.module

    def _step(self, micro_batches: list[np.ndarray], examples: Sequence[E], epoch: int, index: int,
              lr: float) -> StepMetrics:
        import torch.distributed as dist

        engine = self.engine
        for group in engine.optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        loss_sum, samples, tokens = 0.0, 0, 0
        for idx in micro_batches:
            batch = self.collate([examples[i] for i in idx]).to(engine.device)
            loss = self.loss(engine, batch)
            engine.backward(loss)
            engine.step()
            loss_sum += float(loss.detach())
            samples += batch.samples
            tokens += batch.tokens
        stats = torch.tensor([loss_sum, len(micro_batches), samples, tokens], dtype=torch.float64,
                             device=engine.device)
        dist.all_reduce(stats)
        seconds = time.perf_counter() - t0
        total_loss, n_losses, all_samples, all_tokens = stats.tolist()
        return StepMetrics(
            step=index, epoch=epoch, loss=total_loss / n_losses, samples=int(all_samples),
            tokens=int(all_tokens), seconds=seconds, samples_per_s=all_samples / seconds,
            tokens_per_s=all_tokens / seconds, lr=lr,
        )

    def _gather(self, keep: bool) -> tuple[dict[str, torch.Tensor], str]:
        """Full weights (gathered under ZeRO-3) as CPU copies when `keep`, and their sha256."""
        digest = hashlib.sha256()
        weights: dict[str, torch.Tensor] = {}
        with self.live_weights() as named:
            for name, tensor in named:
                cpu = tensor.to("cpu", copy=True).contiguous()
                digest.update(name.encode())
                digest.update(cpu.reshape(-1).view(torch.uint8).numpy().tobytes())
                if keep:
                    weights[name] = cpu
        return weights, digest.hexdigest()

    def _save(self, out_path: str) -> str:
        weights, digest = self._gather(keep=True)
        save_checkpoint(self.engine.module, self.tokenizer, weights, out_path)
        return digest


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def untied_state(module: Any) -> list[tuple[str, torch.Tensor]]:
    """`module`'s state dict in order, without the keys that alias another key's tensor."""
    state = module.state_dict()
    tied = tied_copies(module, state)
    return [(name, tensor) for name, tensor in state.items() if name not in tied]


def tied_copies(module: Any, state: dict[str, torch.Tensor]) -> set[str]:
    """Keys that alias another key's tensor (e.g. lm_head tied to the embeddings): the saved
    checkpoint leaves them out and `from_pretrained` ties them back."""
    tied = getattr(module, "all_tied_weights_keys", None) or {}
    return {t for t, s in tied.items()
            if t in state and s in state and state[t].data_ptr() == state[s].data_ptr()}


def remove_stale_saves(out_path: str) -> None:
    """Delete what a save killed mid-way leaves beside `out_path` (its temporary and replaced folders)."""
    out = Path(out_path)
    for stale in (*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")):
        shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(model: Any, tokenizer: Any, weights: dict[str, torch.Tensor], out_path: str) -> None:
    """Write a HF folder (safetensors + config + tokenizer) to a temp dir beside `out_path`, then
    rename it into place, so a reader never loads a half-written checkpoint. An existing folder
    at `out_path` is replaced. Local paths only."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    try:
        model.save_pretrained(tmp, state_dict=dict(weights))
        tokenizer.save_pretrained(tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{tag}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
