"""Dynamic batching: sequences from concurrent requests are coalesced into one model run.

A batch closes at `max_batch` sequences or `max_wait_ms` after its first one, whichever comes first. The
queue is bounded: `submit` refuses (QueueFull) rather than let memory grow. Runs happen in a thread pool
of `workers` threads, so the event loop keeps accepting requests while onnxruntime computes.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


class QueueFull(RuntimeError):
    pass


class QueueTimeout(RuntimeError):
    """The sequence waited in the queue past the deadline, and was not run (Triton's queue policy timeout)."""


@dataclass
class Item:
    x: np.ndarray  # raw [S, F]
    state: tuple | None = None  # (h [L, H], c [L, H]) for a session step, which alone gets hn/cn back
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]
    queued_ns: int = 0  # perf_counter_ns() when it was queued


class Batcher:
    def __init__(self, predictor, max_batch: int, max_wait_ms: float, max_queue: int, workers: int,
                 on_batch=None, on_run=None, timeout_s: float = 0.0):
        self.predictor = predictor
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1e3, max_queue
        self.workers = workers
        self.timeout_ns = round(timeout_s * 1e9)  # 0: no deadline
        self.on_batch = on_batch or (lambda n: None)
        self.on_run = on_run or (lambda n, queued_ns, compute_ns: None)  # after a run that succeeded
        self.pending: deque[Item] = deque()
        self.arrived = self.full = self.collecting = self.loop = None  # made in start(), on the server's event loop
        self.in_flight = 0  # batches handed to the pool
        self.closed = False
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="infer")
        self.tasks: list[asyncio.Task] = []

    @property
    def depth(self) -> int:
        return len(self.pending)

    @property
    def running(self) -> bool:
        for task in self.tasks:
            if not task.done():
                return True
        return False

    def start(self) -> None:
        # kept: asyncio.get_running_loop() makes a getpid() system call each time (CPython 3.11), once a request
        self.loop = asyncio.get_running_loop()
        self.arrived, self.full = asyncio.Event(), asyncio.Event()  # something / a whole batch is pending
        self.collecting = asyncio.Lock()  # one batch forms at a time, whatever the number of workers
        self.tasks = [asyncio.create_task(self._loop()) for _ in range(self.workers)]

    async def stop(self) -> None:
        """Refuse new work, finish what is queued or running, then stop the loops and the thread pool."""
        self.closed = True
        while self.pending or self.in_flight:
            await asyncio.sleep(0.005)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.pool.shutdown(wait=True)

    async def submit(self, items: list[Item]) -> list[dict]:
        """Queue every item or none; wait for all their results."""
        if self.closed or not self.running:
            raise QueueFull("the batcher is not running (the server is starting or stopping)")
        if len(self.pending) + len(items) > self.max_queue:
            raise QueueFull(f"queue full ({len(self.pending)} of {self.max_queue} sequences waiting)")
        create, now = self.loop.create_future, time.perf_counter_ns()
        for item in items:
            item.future, item.queued_ns = create(), now
        self.pending.extend(items)
        self.arrived.set()
        if len(self.pending) >= self.max_batch:
            self.full.set()
        if len(items) == 1:
            return [await items[0].future]
        return await asyncio.gather(*(item.future for item in items))

    async def _collect(self) -> list[Item]:
        """Up to max_batch items: waits for the first, then at most max_wait for the batch to fill. One timer
        per batch; a timer per item (asyncio.wait_for on a queue) cost more than a small model run."""
        while not self.pending:
            self.arrived.clear()
            await self.arrived.wait()
        if len(self.pending) < self.max_batch and self.max_wait > 0:
            self.full.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.full.wait(), self.max_wait)
        batch = [self.pending.popleft() for _ in range(min(self.max_batch, len(self.pending)))]
        if len(self.pending) < self.max_batch:
            self.full.clear()
        if self.timeout_ns:
            self.expire(batch)
        return [item for item in batch if not item.future.done()]  # skip callers that went away

    def expire(self, batch: list[Item]) -> None:
        now = time.perf_counter_ns()
        for item in batch:
            waited = now - item.queued_ns
            if waited > self.timeout_ns and not item.future.done():
                item.future.set_exception(QueueTimeout(
                    f"Request timeout expired: waited {waited / 1e9:.2f} s in the queue, past the deadline of "
                    f"{self.timeout_ns / 1e9:g} s"))

    async def _loop(self) -> None:
        loop = self.loop
        while True:
            async with self.collecting:
                batch = await self._collect()
            if not batch:
                continue
            self.on_batch(len(batch))
            self.in_flight += 1
            began = time.perf_counter_ns()
            try:
                states = [i.state for i in batch]
                # a stateless request has no use for its h/c: copying them out costs the GIL ~1 us a sequence
                results = await loop.run_in_executor(self.pool, self.predictor.run_ragged, [i.x for i in batch],
                                                     states, [s is not None for s in states])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                self.in_flight -= 1
            self.on_run(len(batch), sum(began - i.queued_ns for i in batch), time.perf_counter_ns() - began)
            for item, result in zip(batch, results):
                if not item.future.done():
                    item.future.set_result(result)
