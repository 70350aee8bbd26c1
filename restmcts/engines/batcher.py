"""A dynamic batcher: gathers rows from concurrent callers into batches for one model thread.

    batcher = Batcher(run_batch, max_rows=64, max_wait_ms=5.0, max_queue=4096)
    outputs = await batcher.submit(rows)        # one caller's rows, answered in order

Callers are asyncio tasks on one event loop (an async Ray actor, or a test). Each `submit` puts
its rows on a queue; a background task takes the first waiting row, waits at most `max_wait_ms`
for more (stopping early once `max_rows` are waiting), and runs `run_batch(rows)` on a single
worker thread, so the event loop keeps accepting requests while a batch runs. A caller's rows
may be split across batches when they do not fit; each row's output reaches its own caller.

Backpressure: at most `max_queue` submits are accepted (waiting or running) at once; further
callers wait in `submit` until one is answered. `run_exclusive(fn)` runs `fn` on the model
thread between two batches (weight swaps).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

Row = TypeVar("Row")
Out = TypeVar("Out")
T = TypeVar("T")


@dataclass
class _Pending(Generic[Row, Out]):
    row: Row
    future: asyncio.Future[Out]


@dataclass
class BatchCounters:
    requests: int = 0
    rows: int = 0
    batches: int = 0
    batch_rows_total: int = 0
    max_batch_rows: int = 0
    busy_s: float = 0.0

    @property
    def mean_batch_rows(self) -> float:
        return self.batch_rows_total / self.batches if self.batches else 0.0


class Batcher(Generic[Row, Out]):
    def __init__(self, run_batch: Callable[[list[Row]], list[Out]], max_rows: int, max_wait_ms: float,
                 max_queue: int, name: str = "engine") -> None:
        self._run_batch = run_batch
        self._max_rows = max_rows
        self._max_wait_s = max_wait_ms / 1000.0
        self._max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-model")
        self._queue: asyncio.Queue[_Pending[Row, Out]] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._in_flight = 0
        self._running: list[_Pending[Row, Out]] = []
        self.counters = BatchCounters()

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a batch."""
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def in_flight(self) -> int:
        """Submits accepted and not yet answered."""
        return self._in_flight

    async def submit(self, rows: Sequence[Row]) -> list[Out]:
        """Queue `rows` and wait for their outputs (in order)."""
        self._start()
        assert self._slots is not None and self._queue is not None
        async with self._slots:
            self._in_flight += 1
            try:
                loop = asyncio.get_running_loop()
                pending = [_Pending(row, loop.create_future()) for row in rows]
                for p in pending:
                    self._queue.put_nowait(p)
                self._arrived.set()
                outputs = await asyncio.gather(*(p.future for p in pending))
            finally:
                self._in_flight -= 1
        self.counters.requests += 1
        return list(outputs)

    async def run_exclusive(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the model thread, after the running batch and before the next one."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def close(self) -> None:
        """Stop serving; callers still waiting get a RuntimeError."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            self._loop_task = None
        waiting = list(self._running)
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for p in waiting:
            if not p.future.done():
                p.future.set_exception(RuntimeError("engine closed"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> None:
        if self._loop_task is None:
            self._queue = asyncio.Queue()
            self._slots = asyncio.Semaphore(self._max_queue)
            self._loop_task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            batch = [p for p in batch if not p.future.cancelled()]
            if not batch:
                continue
            start = time.perf_counter()
            self._running = batch
            try:
                outputs = await loop.run_in_executor(self._executor, self._run_batch, [p.row for p in batch])
            except Exception as err:  # a failed batch fails its callers, not the server
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            finally:
                self._running = []
                self._count(len(batch), time.perf_counter() - start)
            for p, out in zip(batch, outputs, strict=True):
                if not p.future.done():
                    p.future.set_result(out)

    async def _collect(self) -> list[_Pending[Row, Out]]:
        """The first waiting row, then whatever arrives within max_wait, up to max_rows."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self._max_wait_s
        while True:
            while not self._queue.empty() and len(batch) < self._max_rows:
                batch.append(self._queue.get_nowait())
            remaining = deadline - time.monotonic()
            if len(batch) >= self._max_rows or remaining <= 0:
                return batch
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                pass

    def _count(self, rows: int, seconds: float) -> None:
        c = self.counters
        c.batches += 1
        c.rows += rows
        c.batch_rows_total += rows
        c.max_batch_rows = max(c.max_batch_rows, rows)
        c.busy_s += seconds
