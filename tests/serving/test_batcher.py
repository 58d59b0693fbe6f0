"""The batcher alone, with a fake predictor that records its batches: when a batch closes, and shutdown."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from lstm_onnx.serving.batcher import Batcher, Item, QueueFull


class Recorder:
    """Stands in for runtimes.embed.Predictor: returns each item's first value, keeps the batch sizes."""

    def __init__(self, gate: threading.Event | None = None):
        self.batches, self.gate = [], gate

    def run_ragged(self, xs, states, keep_state=True):
        if self.gate is not None:
            self.gate.wait(5)
        self.batches.append(len(xs))
        return [{"y": x[0]} for x in xs]


def items(n: int) -> list[Item]:
    return [Item(np.full((1, 1), k, np.float32)) for k in range(n)]


def run(coro_fn, predictor, **kw):
    async def main():
        b = Batcher(predictor, **{"max_batch": 4, "max_wait_ms": 2000.0, "max_queue": 64, "workers": 1, **kw})
        b.start()
        try:
            return await coro_fn(b)
        finally:
            await b.stop()
    return asyncio.run(main())


def test_a_batch_closes_as_soon_as_it_is_full_and_results_reach_their_callers():
    rec = Recorder()

    async def go(b):
        t = time.perf_counter()
        first = asyncio.ensure_future(b.submit(items(1)))
        await asyncio.sleep(0.05)  # the batch is forming, waiting up to 2 s for company
        rest = await asyncio.gather(*(b.submit([it]) for it in items(4)[1:]))
        return [await first] + rest, time.perf_counter() - t

    out, took = run(go, rec)
    assert rec.batches == [4] and took < 1.0, (rec.batches, took)
    assert [r[0]["y"][0] for r in out] == [0, 1, 2, 3]


def test_a_partial_batch_waits_max_wait_for_company():
    rec = Recorder()

    async def go(b):
        t = time.perf_counter()
        await b.submit(items(1))
        return time.perf_counter() - t

    took = run(go, rec, max_wait_ms=200.0)
    assert rec.batches == [1] and 0.15 < took < 2.0, took


def test_one_batch_forms_at_a_time_across_workers():
    """With two workers, the leftover of a full batch still waits for company instead of running alone."""
    rec = Recorder()

    async def go(b):
        done = [asyncio.ensure_future(b.submit(items(1)))]
        await asyncio.sleep(0.05)  # a batch is forming
        done += [asyncio.ensure_future(b.submit([it])) for it in items(4)]  # fills it, one left over
        await asyncio.sleep(0.05)
        done += [asyncio.ensure_future(b.submit([it])) for it in items(3)]  # fills the next one
        await asyncio.gather(*done)

    run(go, rec, workers=2, max_wait_ms=1000.0)
    assert rec.batches == [4, 4], rec.batches


def test_stop_waits_for_the_running_batch_then_refuses_work():
    gate = threading.Event()
    rec = Recorder(gate)

    async def main():
        b = Batcher(rec, max_batch=4, max_wait_ms=0.0, max_queue=8, workers=1)
        b.start()
        pending = asyncio.ensure_future(b.submit(items(1)))
        await asyncio.sleep(0.05)  # the batch is in the pool, blocked on the gate
        stopping = asyncio.ensure_future(b.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done(), "stop() returned while a batch was running"
        gate.set()
        result = await pending
        await stopping
        with pytest.raises(QueueFull, match="not running"):
            await b.submit(items(1))
        return result

    assert asyncio.run(main())[0]["y"][0] == 0


def test_the_queue_is_bounded():
    async def go(b):
        with pytest.raises(QueueFull, match="queue full"):
            await b.submit(items(65))

    run(go, Recorder())


def test_a_sequence_past_its_queue_deadline_fails_unrun():
    """Issue 21: no queue deadline. The first item holds the one worker for 0.4 s; the second waits past the
    0.1 s deadline, so it gets QueueTimeout and never reaches the model."""
    from lstm_onnx.serving.batcher import QueueTimeout

    gate = threading.Event()
    rec = Recorder(gate)

    async def go(b):
        first = asyncio.ensure_future(b.submit(items(1)))
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(b.submit(items(2)[1:]))
        await asyncio.sleep(0.4)
        gate.set()
        return await first, await asyncio.gather(late, return_exceptions=True)

    (first, (late,)) = run(go, rec, max_batch=1, max_wait_ms=0.0, timeout_s=0.1)
    assert first[0]["y"][0] == 0
    assert isinstance(late, QueueTimeout) and "timeout expired" in str(late), late
    assert rec.batches == [1], rec.batches
