"""The dynamic batcher on its own, with a fake model: packing, splitting, failures, bounds."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from restmcts.engines.batcher import Batcher


class FakeModel:
    """Doubles each row; records batch sizes; can be told to fail, to take its time, or to hold
    every batch until `release` is set (`started` is set when a batch begins)."""

    def __init__(self, delay_s: float = 0.0, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.fail_on: int | None = None
        self.threads: set[str] = set()
        self.started = threading.Event()
        self.release = threading.Event()
        if not gated:
            self.release.set()

    def __call__(self, rows: list[int]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(rows))
        self.started.set()
        assert self.release.wait(timeout=60), "the test never released the batch"
        time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in rows:
            raise RuntimeError("model failed")
        return [2 * r for r in rows]


def test_concurrent_submits_share_batches_and_get_their_own_rows() -> None:
    model = FakeModel(delay_s=0.01)

    async def go() -> list[list[int]]:
        batcher = Batcher(model, max_rows=8, max_wait_ms=20.0, max_queue=100)
        out = await asyncio.gather(*(batcher.submit([10 * i, 10 * i + 1, 10 * i + 2]) for i in range(10)))
        assert batcher.counters.requests == 10 and batcher.counters.rows == 30
        assert batcher.counters.mean_batch_rows == pytest.approx(30 / len(model.batches))
        batcher.close()
        return list(out)

    out = asyncio.run(go())
    assert out == [[20 * i, 20 * i + 2, 20 * i + 4] for i in range(10)]
    assert max(len(b) for b in model.batches) == 8  # full batches, a request split across two
    assert len(model.batches) == 4
    assert all(name.startswith("engine-model") for name in model.threads)  # off the event loop


async def _until(flag: threading.Event) -> None:
    """Wait, without blocking the event loop, until another thread sets `flag`."""
    await asyncio.get_running_loop().run_in_executor(None, flag.wait, 60)
    assert flag.is_set()


def test_a_lone_request_waits_for_company_then_runs_alone() -> None:
    """The first row waits (up to max_wait) for more rows; a lone one still runs, in a batch of one."""
    waited, lone = FakeModel(), FakeModel()

    async def go() -> None:
        batcher = Batcher(waited, max_rows=2, max_wait_ms=60_000.0, max_queue=10)
        first = asyncio.ensure_future(batcher.submit([1]))
        for _ in range(5):  # the collector takes row 1 and starts waiting for more
            await asyncio.sleep(0)
        assert waited.batches == [], "a lone row does not run before max_wait unless the batch fills"
        assert await batcher.submit([2]) == [4]  # the second row fills the batch: both run at once
        assert await first == [2]
        batcher.close()

        batcher = Batcher(lone, max_rows=64, max_wait_ms=30.0, max_queue=10)
        assert await batcher.submit([1]) == [2]  # nobody else comes: it runs once max_wait has passed
        batcher.close()

    asyncio.run(go())
    assert waited.batches == [[1, 2]]
    assert lone.batches == [[1]]


def test_a_failed_batch_fails_its_callers_only() -> None:
    model = FakeModel()
    model.fail_on = 3

    async def go() -> None:
        batcher = Batcher(model, max_rows=1, max_wait_ms=0.0, max_queue=10)
        with pytest.raises(RuntimeError, match="model failed"):
            await batcher.submit([3])
        assert await batcher.submit([4]) == [8]
        batcher.close()

    asyncio.run(go())


def test_max_queue_bounds_requests_in_flight() -> None:
    model = FakeModel(delay_s=0.005)
    peak = 0

    async def go() -> None:
        nonlocal peak
        batcher = Batcher(model, max_rows=4, max_wait_ms=1.0, max_queue=3)
        tasks = [asyncio.ensure_future(batcher.submit([i])) for i in range(12)]
        while not all(t.done() for t in tasks):
            peak = max(peak, batcher.in_flight)
            assert batcher.queued_rows <= 3
            await asyncio.sleep(0.001)
        assert [t.result() for t in tasks] == [[2 * i] for i in range(12)]
        batcher.close()

    asyncio.run(go())
    assert peak == 3
    assert max(len(b) for b in model.batches) <= 3


def test_close_fails_waiting_callers() -> None:
    model = FakeModel(gated=True)

    async def go() -> None:
        batcher = Batcher(model, max_rows=1, max_wait_ms=0.0, max_queue=10)
        tasks = [asyncio.ensure_future(batcher.submit([i])) for i in range(3)]
        await _until(model.started)  # the first batch runs, the other two wait
        batcher.close()
        model.release.set()
        # A caller left waiting forever is the failure; 30 s only bounds how long that takes to show.
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
        assert [type(r) for r in results] == [RuntimeError] * 3

    asyncio.run(go())
    assert model.batches == [[0]]


def test_run_exclusive_runs_between_batches() -> None:
    model = FakeModel(gated=True)
    order: list[str] = []

    async def go() -> None:
        batcher = Batcher(lambda rows: order.append("batch") or model(rows), max_rows=1, max_wait_ms=0.0,
                          max_queue=10)
        first = asyncio.ensure_future(batcher.submit([1]))
        await _until(model.started)  # the first batch is running now
        swap = asyncio.ensure_future(batcher.run_exclusive(lambda: order.append("swap")))
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == ["batch"], "the swap waits for the running batch"
        model.release.set()
        await swap
        assert await first == [2]
        await batcher.submit([2])
        batcher.close()

    asyncio.run(go())
    assert order == ["batch", "swap", "batch"]
