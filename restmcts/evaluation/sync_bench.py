"""Weight sync, measured: seconds to put a learner's trained weights into a live server replica.

    record = run_sync_bench(cfg, "runs/bench/sync", models=("tiny", "smollm2-135m"))

For each model a real learner actor (learners.num_learners=1) trains one epoch on a few rows,
stays alive (`train_live`), and `Servers.push` sends its weights to one live policy replica by
every `sync.method` asked for, `repeats` times each. Measured beside them, in the same process
and run:
- "via_driver": the path that passes through this process: read the saved checkpoint
  (`read_weights`), `ray.put` it, and every replica loads it (`load_weights`);
- the copy limit: one in-process memory copy of the same number of bytes (`dst.copy_(src)` on
  uint8 buffers), the floor any path that moves the bytes at least once stands on.

During each sync a thread samples this process's resident memory (/proc/self/status VmRSS)
every few milliseconds; `driver_peak_mb` is its peak above the level just before the sync, so a
path that holds the weights in the driver shows them there.

Models: "tiny" is cfg.model.policy as it is; "smollm2-135m" is a Llama of SmolLM2-135M's published
shape (`SMOLLM2_135M`, about 540 MB in fp32) built here from a fixed seed, since only its bytes
matter to a sync (no hub access). Any `ModelShape` can be passed too. Built models carry
cfg.model.policy's tokenizer, which is all the hf engine and the learner need to start.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from restmcts.config import Config

METHODS = ("collective", "object_store")
VIA_DRIVER = "via_driver"


@dataclass(frozen=True)
class ModelShape:
    """A Llama causal LM's size; built with random weights from `seed`."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position: int = 2048
    tie_embeddings: bool = True
    seed: int = 0


SMOLLM2_135M = ModelShape("smollm2-135m", hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3,
                          intermediate_size=1536, vocab_size=49152, max_position=2048)
SHAPES = {SMOLLM2_135M.name: SMOLLM2_135M}


@dataclass(frozen=True)
class SyncPath:
    """One way of moving the weights, timed `repeats` times."""

    method: str  # "collective" | "object_store" | "via_driver"
    seconds: tuple[float, ...]
    median_s: float
    driver_peak_mb: float  # the highest of the repeats


@dataclass(frozen=True)
class ModelSync:
    model: str
    path: str  # the checkpoint the learner trained from
    bytes: int  # weights sent per sync (the push's manifest)
    copy_limit_s: float
    paths: tuple[SyncPath, ...]
    collective_over_copy_limit: float | None  # None when the collective was not measured

    def path_for(self, method: str) -> SyncPath:
        return next(p for p in self.paths if p.method == method)


@dataclass(frozen=True)
class SyncBench:
    repeats: int
    replicas: int
    models: tuple[ModelSync, ...]


def run_sync_bench(cfg: Config, out: str, models: Sequence[str | ModelShape] = ("tiny", "smollm2-135m"),
                   methods: Sequence[str] = METHODS, repeats: int = 3) -> SyncBench:
    """Measure every model's sync by each method and via the driver; Ray must be running."""
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"sync methods: unknown {bad}; valid: {', '.join(METHODS)}")
    if repeats < 1:
        raise ValueError(f"repeats: need >= 1, got {repeats}")
    shapes = [_shape(m) for m in models]
    cfg = cfg.replace("learners.num_learners=1", "learners.policy_epochs=1", "learners.max_seq_len=32",
                      "learners.micro_batch_size=4", "learners.grad_accum=1", "learners.max_restarts=0",
                      "servers.policy_replicas=1")
    results = []
    for shape in shapes:
        name = shape if isinstance(shape, str) else shape.name
        folder = f"{out}/{name}"
        init = cfg.model.policy if shape == "tiny" else build_model(shape, cfg.model.policy, f"{folder}/init")
        results.append(_measure(cfg, name, init, folder, methods, repeats))
    return SyncBench(repeats, cfg.servers.policy_replicas, tuple(results))


def build_model(shape: ModelShape, tokenizer_from: str, path: str) -> str:
    """Save a randomly initialised Llama of `shape` with `tokenizer_from`'s tokenizer at `path`
    (kept: a folder that already holds one is used as it is)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from restmcts.checkpoints import load_tokenizer, save

    if (Path(path) / "model.safetensors").exists():
        return path
    tok = load_tokenizer(tokenizer_from)
    if len(tok) > shape.vocab_size:
        raise ValueError(f"{shape.name}: vocab_size {shape.vocab_size} is smaller than the tokenizer's {len(tok)}")
    config = LlamaConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads, max_position_embeddings=shape.max_position,
        tie_word_embeddings=shape.tie_embeddings, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(shape.seed)
        model = LlamaForCausalLM(config)
    save(model, tok, path)
    return path


def _sig(seconds: float, digits: int = 4) -> float:
    """`seconds` to `digits` significant digits: a copy of a small model takes microseconds, which a
    fixed number of decimals would round to zero."""
    return float(f"{seconds:.{digits}g}")


def copy_limit_seconds(nbytes: int, rounds: int = 5) -> float:
    """Median seconds of one in-process copy of `nbytes` between two touched buffers."""
    import torch

    src = torch.ones(nbytes, dtype=torch.uint8)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up: both buffers' pages are mapped before the clock runs
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class PeakRSS:
    """Peak resident memory of this process above its level at `start`, sampled every `every_s`."""

    def __init__(self, every_s: float = 0.002) -> None:
        self.every_s = every_s
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def above_mb(self) -> float:
        return (self.peak - self.base) / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.every_s)


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmRSS line")


def check_models(models: Sequence[str | ModelShape]) -> None:
    """Raise, naming the valid ones, when a model is neither "tiny" nor a known shape."""
    for m in models:
        _shape(m)


def _shape(model: str | ModelShape) -> str | ModelShape:
    if isinstance(model, ModelShape) or model == "tiny":
        return model
    if model not in SHAPES:
        raise ValueError(f"sync models: unknown model {model!r}; valid: tiny, {', '.join(SHAPES)}")
    return SHAPES[model]


def _measure(cfg: Config, name: str, init: str, folder: str, methods: Sequence[str], repeats: int) -> ModelSync:
    """Servers on `init`, a live learner trained from it, then every path `repeats` times."""
    import gc

    from restmcts import replay, storage
    from restmcts.actors.servers import start_servers
    from restmcts.learners import train_live
    from restmcts.replay import Trace
    from restmcts.weights import Version

    storage.remove(f"{folder}/trained")
    data = f"{folder}/traces.parquet"
    # any few rows: the learner only needs something to train on before its weights are sent
    replay.write_records([Trace(f"q{i}", f"What is {i} plus one?", (f"{i} + 1 = {i + 1}", f"The answer is {i + 1}"),
                                str(i + 1), True, 9, "mcts_star", 1) for i in range(4)], Trace, data)
    trained = f"{folder}/trained"
    servers = start_servers(cfg, init, cfg.model.prm, record=f"{folder}/weights.json")
    group = None
    try:
        _, group = train_live(cfg, "policy", init, [data], trained)
        version = 0
        timed: dict[str, list[tuple[float, float]]] = {}
        nbytes = 0
        for method in methods:
            mcfg = cfg.replace(f"sync.method={method}")
            for _ in range(repeats):
                version += 1
                report, seconds, peak = _timed(partial(servers.push, "policy", group, Version(version, trained), mcfg))
                nbytes = report.bytes
                timed.setdefault(method, []).append((seconds, peak))
        group.shutdown()
        group = None
        for _ in range(repeats):
            version += 1
            _, seconds, peak = _timed(partial(_via_driver, servers, Version(version, trained)))
            timed.setdefault(VIA_DRIVER, []).append((seconds, peak))
        gc.collect()
    finally:
        if group is not None:
            group.shutdown()
        servers.shutdown()
    if not nbytes:
        from restmcts.checkpoints import read_weights

        nbytes = sum(t.numel() * t.element_size() for t in read_weights(trained).values())
    limit = copy_limit_seconds(nbytes)
    paths = tuple(SyncPath(m, tuple(_sig(s) for s, _ in runs), _sig(statistics.median(s for s, _ in runs)),
                           round(max(p for _, p in runs), 1)) for m, runs in timed.items())
    collective = next((p.median_s for p in paths if p.method == "collective"), None)
    return ModelSync(name, init, nbytes, _sig(limit), paths,
                     round(collective / limit, 2) if collective is not None else None)


def _timed(sync: Callable[[], Any]) -> tuple[Any, float, float]:
    """`sync()`'s result, its wall seconds and this process's peak memory above its start, in MB."""
    import gc

    gc.collect()
    with PeakRSS() as rss:
        start = time.perf_counter()
        result = sync()
        seconds = time.perf_counter() - start
    return result, seconds, rss.above_mb


def _via_driver(servers: Any, version: Any) -> None:
    """The path through this process: checkpoint -> driver memory -> object store -> every replica."""
    import ray

    from restmcts.checkpoints import read_weights

    ref = ray.put(read_weights(version.path))
    ray.get([h.load_weights.remote(ref, version) for h in servers.policy])
