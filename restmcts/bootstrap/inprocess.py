"""The project's engines and learners in this process: how the starting models are sampled and trained.

    with in_process_client(cfg, fmt, "OUT/policy", prm="OUT/prm") as client:
        results = asyncio.run(concurrently([work(client, q) for q in questions], "evaluate", "questions"))
    result = train(cfg, "policy", init, "OUT/sft.parquet", "OUT/policy", rows=4000)

Generation and scoring go through the hf engines (restmcts.engines) behind a ModelClient
(`ModelClient.in_process`), so a chain, a Monte Carlo label or a PRM score takes exactly the path
a search pass takes: PromptFormat rendering, one GenerateRequest per step, steps that end at EOS
recorded as ends of the solution (MessageEnds). Every question runs as its own asyncio task, and
the engine's batcher packs their calls into forward batches. Training goes through the learners
with `learners.num_learners = 0` (DeepSpeed in this process), from replay files on disk.

How the `bootstrap.*` settings map onto these parts (restmcts/config.py BootstrapConfig):

    temperature     the chains' sampling temperature (Monte Carlo labels, pass@k samples)
    max_new_tokens  policy tokens per step (a longer step is cut there); a chain ends at an
                    answer, at EOS or after search.max_depth steps
    gen_batch_size  rows per forward batch in the engines (servers.max_batch_size)
    sft_* / prm_*   the learner's micro_batch_size (*_batch_size) and peak learning rate (*_lr);
                    epochs = round(*_steps * *_batch_size / rows), at least 1 when *_steps > 0
                    (0 trains nothing), so the learner takes about *_steps training steps;
                    lr_schedule "warmup_cosine" (linear warmup over 5% of the steps, cosine decay
                    to 10% of the peak), AdamW without weight decay, gradients clipped at norm 1,
                    fp32, torch on all of this process's threads
    seed            the learners' seed and the root of every sampling seed
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from restmcts.config import Config, SearchSettings, ServersConfig
from restmcts.progress import progress
from restmcts.prompt import PromptFormat

if TYPE_CHECKING:
    from restmcts.actors.client import ModelClient
    from restmcts.learners.engine import TrainResult

T = TypeVar("T")

WARMUP_RATIO = 0.05  # of a phase's training steps
MAX_GRAD_NORM = 1.0


# --------------------------------------------------------------------------- generation and scoring


def engine_settings(cfg: Config) -> ServersConfig:
    """The in-process engines: hf, `bootstrap.gen_batch_size` rows per forward, all of this
    process's torch threads, on the GPU when there is one."""
    import torch

    return dataclasses.replace(cfg.servers, engine="hf", max_batch_size=cfg.bootstrap.gen_batch_size,
                               torch_threads=torch.get_num_threads(),
                               num_gpus=1.0 if torch.cuda.is_available() else 0.0)


def chain_settings(cfg: Config) -> SearchSettings:
    """The search settings of the bootstrap's chains: `search` with the bootstrap's temperature,
    step budget (`bootstrap.max_new_tokens`) and samples per question (`bootstrap.eval_samples`)."""
    b = cfg.bootstrap
    return dataclasses.replace(cfg.search.settings(), temperature=b.temperature, max_step_tokens=b.max_new_tokens,
                               num_samples=b.eval_samples)


@contextmanager
def in_process_client(cfg: Config, fmt: PromptFormat, policy: str, prm: str | None = None) -> Iterator[ModelClient]:
    """A ModelClient over a policy engine on checkpoint `policy` (and a score engine on `prm`).
    The engines serve one event loop: run all the work inside one `asyncio.run`."""
    from restmcts.actors.client import ModelClient
    from restmcts.engines import make_policy_engine, make_score_engine

    servers = engine_settings(cfg)
    engines = [make_policy_engine(servers, policy)]
    if prm is not None:
        engines.append(make_score_engine(servers, prm))
    try:
        yield ModelClient.in_process(engines[0], engines[1] if prm is not None else None, fmt, chain_settings(cfg))
    finally:
        for engine in engines:
            engine.close()


async def concurrently(work: Sequence[Awaitable[T]], desc: str, unit: str) -> list[T]:
    """Await all of `work` at once (results in order), with a progress line as each finishes."""
    with progress(len(work), desc, unit=unit) as bar:
        async def one(w: Awaitable[T]) -> T:
            result = await w
            bar.update(1)
            return result

        return list(await asyncio.gather(*(one(w) for w in work)))


# --------------------------------------------------------------------------- training


def learner_config(cfg: Config, steps: int, batch_size: int, lr: float, rows: int) -> Config:
    """`cfg` with a learners section for one bootstrap phase (see the module docstring)."""
    import torch

    epochs = max(1, round(steps * batch_size / rows)) if steps > 0 and rows > 0 else 0
    learners = dataclasses.replace(
        cfg.learners, num_learners=0, num_cpus=float(torch.get_num_threads()), micro_batch_size=batch_size,
        grad_accum=1, policy_lr=lr, prm_lr=lr, policy_epochs=epochs, prm_epochs=epochs, weight_decay=0.0,
        max_grad_norm=MAX_GRAD_NORM, lr_schedule="warmup_cosine", warmup_ratio=WARMUP_RATIO, precision="fp32",
        zero_stage=0, max_restarts=0, seed=cfg.bootstrap.seed,
    )
    return dataclasses.replace(cfg, learners=learners)


def train(cfg: Config, role: Literal["policy", "prm"], init: str, data: str, out: str, rows: int) -> TrainResult:
    """Train `role` ("policy": SFT on data's correct traces; "prm": regression on its values)
    from checkpoint `init` in this process, and save it to `out`; `rows` is data's row count."""
    from restmcts.learners import train_phase

    b = cfg.bootstrap
    steps, batch_size, lr = ((b.sft_steps, b.sft_batch_size, b.sft_lr) if role == "policy"
                             else (b.prm_steps, b.prm_batch_size, b.prm_lr))
    return train_phase(learner_config(cfg, steps, batch_size, lr, rows), role, init, [data], out)


# --------------------------------------------------------------------------- report helpers


def num_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def tail_mean(result: TrainResult, n: int = 20) -> float:
    """Mean loss of the last `n` training steps (0 without steps)."""
    tail = [m.loss for m in result.history[-n:]]
    return round(sum(tail) / len(tail), 5) if tail else 0.0


@contextmanager
def timed(timings: dict[str, float], name: str, label: str) -> Iterator[None]:
    """Adds the block's wall time to `timings[name]` and prints a `[label] name: Ns` line."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 2)
        print(f"[{label}] {name}: {timings[name]:.1f}s", flush=True)
